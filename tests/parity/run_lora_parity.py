#!/usr/bin/env python3
"""LoRA parity with PEFT: mergec's `lora NAME = ... on base` + `merge NAME` against PEFT's own
merge_and_unload, tensor by tensor.

Builds a tiny transformers Llama (bf16, random), wraps it with PEFT (get_peft_model) under
several LoraConfigs (plain, rslora, rank_pattern/alpha_pattern, modules_to_save, embedding
LoRA), gives the adapters random nonzero B (a trained adapter), saves them with
save_pretrained, merges each with merge_and_unload (CPU: PEFT computes B @ A in f32 and casts
the delta to bf16 before adding it), runs `mergec run` of `merge NAME` on the saved base and
adapter, and compares every tensor: max bf16 ulp and % bit-exact. Prints a Markdown table
(--report FILE appends nothing: it prints only; docs/parity.md carries the table).

Run with the parity venv: PARITY_VENV=/work/main/.venv-parity
  $PARITY_VENV/bin/python tests/parity/run_lora_parity.py [--workdir DIR] [--mergec PATH]"""
import argparse
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]


def bf16_bits(t):
    return t.contiguous().view(torch.int16).numpy().astype(np.int32)


def ordered(bits):
    # bf16 bits as a monotone integer line (sign-magnitude to two's complement order).
    bits = bits & 0xFFFF
    return np.where(bits & 0x8000, 0x8000 - (bits & 0x7FFF), 0x8000 + bits)


def compare(a, b):
    x, y = ordered(bf16_bits(a)), ordered(bf16_bits(b))
    d = np.abs(x - y)
    return int(d.max()) if d.size else 0, int((d == 0).sum()), int(d.size)


def tiny_llama(seed):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p, dtype=torch.float32).to(torch.bfloat16) * 0.05)
    return model


CASES = [
    ("plain r=8 a=16", dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj",
                                                                "o_proj", "gate_proj", "up_proj",
                                                                "down_proj"])),
    ("rslora r=16 a=8", dict(r=16, lora_alpha=8, use_rslora=True,
                             target_modules=["q_proj", "v_proj", "down_proj"])),
    ("rank/alpha pattern", dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "up_proj"],
                                rank_pattern={"up_proj": 2, "model.layers.1.self_attn.q_proj": 6},
                                alpha_pattern={"k_proj": 3})),
    ("modules_to_save lm_head", dict(r=8, lora_alpha=16, target_modules=["q_proj", "o_proj"],
                                     modules_to_save=["lm_head"])),
    ("embedding LoRA", dict(r=4, lora_alpha=8, target_modules=["embed_tokens", "v_proj"])),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=os.environ.get("PARITY_WORKDIR", "/tmp/mergec-lora-parity"))
    ap.add_argument("--mergec", default=str(ROOT / "build" / "bin" / "mergec"))
    args = ap.parse_args()
    from peft import LoraConfig, get_peft_model
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base = tiny_llama(0)
    base.save_pretrained(work / "base", safe_serialization=True)
    rows = []
    for i, (label, kw) in enumerate(CASES):
        model = tiny_llama(0)
        peft_model = get_peft_model(model, LoraConfig(**kw))
        torch.manual_seed(100 + i)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                # Trained-looking adapters: B (and the embeddings' B) nonzero; saved modules
                # moved away from the base.
                if "lora_" in name or "modules_to_save" in name:
                    p.add_(torch.randn_like(p, dtype=torch.float32).to(p.dtype) * 0.05)
        adir = work / ("adapter%d" % i)
        peft_model.save_pretrained(adir)
        merged = peft_model.merge_and_unload()
        ref = {k: v.detach().to(torch.bfloat16) for k, v in merged.state_dict().items()}
        recipe = work / ("r%d.merge" % i)
        recipe.write_text('model base = "base"\nlora x = "adapter%d" on base\nmerge x\n' % i)
        out = work / ("out%d" % i)
        subprocess.run([args.mergec, "run", str(recipe), "-o", str(out), "--quiet"], check=True)
        got = load_file(str(out / "model.safetensors"))
        base_sd = load_file(str(work / "base" / "model.safetensors"))
        worst, exact, total, changed = 0, 0, 0, 0
        for name, t in got.items():
            k, x, n = compare(t, ref[name])
            if k > 1:
                print("  %s: max ulp %d, max |diff| %.3g (PEFT's delta %.3g)" % (
                    name, k, (t.float() - ref[name].float()).abs().max(),
                    (ref[name].float() - base_sd[name].float()).abs().max()))
            worst, exact, total = max(worst, k), exact + x, total + n
            changed += int(not torch.equal(t, base_sd[name]))
        rows.append((label, len(got), changed, worst, 100.0 * exact / total))
        print("%s: %d tensors (%d changed), max ulp %d, bit-exact %.3f %%" % rows[-1], flush=True)
    print()
    print("PEFT %s, transformers %s, torch %s" % (md.version("peft"), md.version("transformers"),
                                                 torch.__version__))
    print()
    print("| adapter (LoraConfig) | tensors | changed | max bf16 ulp | bit-exact |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print("| %s | %d | %d | %d | %.3f %% |" % r)
    return 0 if all(r[3] <= 1 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
