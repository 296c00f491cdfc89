#!/usr/bin/env python3
"""--emit-lora parity with PEFT: the adapter `mergec run R --emit-lora RANK` writes, loaded with
PEFT onto the base and merged with merge_and_unload, against mergec's full merge of R.

Builds a tiny transformers Llama (f32, random), two PEFT adapters on it (r = 8 on every linear
module; r = 8 on q/v/down with lm_head in modules_to_save), random nonzero B, saved with
save_pretrained. R = `merge base + tv(a) + tv(b)`, f32 throughout. For each --emit-lora setting:
PeftModel.from_pretrained(base, emitted).merge_and_unload() minus base against (a) the full
merge minus base (the truncation error: 0 up to f32 rounding at rank 16 = 8 + 8) and (b) numpy's
rank-k truncation of it (f64 SVD), relative Frobenius error, worst tensor; and PEFT's own load
report (missing or unexpected adapter keys must be none). Prints a Markdown table.

Run with the parity venv: PARITY_VENV=/work/main/.venv-parity
  $PARITY_VENV/bin/python tests/parity/run_emit_lora_parity.py [--workdir DIR] [--mergec PATH]"""
import argparse
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_llama(seed):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    return model


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=os.environ.get("PARITY_WORKDIR", "/tmp/mergec-emit-lora-parity"))
    ap.add_argument("--mergec", default=str(ROOT / "build" / "bin" / "mergec"))
    args = ap.parse_args()
    from peft import LoraConfig, PeftModel, get_peft_model
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tiny_llama(0).save_pretrained(work / "base", safe_serialization=True)
    for i, kw in enumerate((dict(r=8, lora_alpha=16, target_modules=LINEAR),
                            dict(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                 modules_to_save=["lm_head"]))):
        peft_model = get_peft_model(tiny_llama(0), LoraConfig(**kw))
        torch.manual_seed(200 + i)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_" in name or "modules_to_save" in name:
                    p.add_(torch.randn_like(p) * 0.05)
        peft_model.save_pretrained(work / ("adapter%d" % i))
    recipe = work / "r.merge"
    recipe.write_text('model base = "base"\nlora a = "adapter0" on base\n'
                      'lora b = "adapter1" on base\nmerge base + tv(a) + tv(b)\n')
    subprocess.run([args.mergec, "run", str(recipe), "-o", str(work / "full"), "--quiet"], check=True)
    full = {k: v.numpy().astype(np.float64) for k, v in load_file(str(work / "full" / "model.safetensors")).items()}
    base = {k: v.numpy().astype(np.float64) for k, v in load_file(str(work / "base" / "model.safetensors")).items()}
    rows, ok = [], True
    for label, extra in (("--emit-lora 16 (= 8 + 8)", ["--emit-lora", "16"]),
                         ("--emit-lora 4", ["--emit-lora", "4"]),
                         ("--emit-lora 64 --sv-epsilon 0.05", ["--emit-lora", "64", "--sv-epsilon", "0.05"])):
        out = work / ("emit" + "_".join(extra).replace("-", ""))
        subprocess.run([args.mergec, "run", str(recipe), "-o", str(out), "--quiet"] + extra, check=True)
        config = json.load(open(out / "adapter_config.json"))
        factors = load_file(str(out / "adapter_model.safetensors"))
        model = PeftModel.from_pretrained(tiny_llama(0).from_pretrained(work / "base"), str(out))
        # PEFT's own account of the keys it could not place (none may be unexpected).
        from peft.utils import get_peft_model_state_dict
        loaded = get_peft_model_state_dict(model)
        unexpected = sorted(set(factors) - set(loaded))
        merged = {k: v.detach().numpy().astype(np.float64)
                  for k, v in model.merge_and_unload().state_dict().items()}
        vs_full = vs_trunc = 0.0
        ranks = []
        for name in full:
            tv = full[name] - base[name]
            got = merged[name] - base[name]
            if not tv.any():
                vs_full = max(vs_full, float(np.abs(got).max()))
                continue
            module = name[:-len(".weight")]
            a = factors.get("base_model.model." + module + ".lora_A.weight")
            if a is None:  # saved in full
                vs_trunc = max(vs_trunc, rel(got, tv))
                continue
            k = a.shape[0]
            ranks.append(k)
            u, s, vt = np.linalg.svd(tv, full_matrices=False)
            vs_trunc = max(vs_trunc, rel(got, (u[:, :k] * s[:k]) @ vt[:k]))
            vs_full = max(vs_full, rel(got, tv))
        rows.append((label, config["r"], "%d-%d" % (min(ranks), max(ranks)), len(config["rank_pattern"]),
                     len(config["modules_to_save"] or []), len(unexpected), vs_trunc, vs_full))
        ok = ok and not unexpected and vs_trunc <= 1e-5
        print("%s: r %d, module ranks %s, %d in rank_pattern, %d saved, %d unexpected keys, "
              "vs truncation %.2e, vs full merge %.2e" % rows[-1], flush=True)
    print()
    print("PEFT %s, transformers %s, torch %s" % (md.version("peft"), md.version("transformers"),
                                                 torch.__version__))
    print()
    print("| mergec run R ... | r | module ranks | rank_pattern | modules_to_save | keys PEFT did not load | PEFT merge vs rank-k truncation | PEFT merge vs full merge |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| `%s` | %d | %s | %d | %d | %d | %.1e | %.1e |" % r)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
