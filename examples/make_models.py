#!/usr/bin/python3
"""Writes three small bf16 Llama-shaped checkpoints for the examples (no downloads):
examples/models/base, and two "fine-tunes" of it, examples/models/math and examples/models/code
(base plus a different low-rank update and a little noise each). About 2 MB a model. Beside
them, two PEFT LoRA adapters on the base, examples/models/lora-math and lora-code
(adapter_config.json + adapter_model.safetensors as PEFT's save_pretrained writes them: r = 8,
lora_alpha = 16, bf16 factors on every linear layer), for examples/lora_geomedian.merge.

Idempotent: models already written with the same settings are left alone.
Usage: /usr/bin/python3 examples/make_models.py [--out DIR]   (needs only numpy)"""
import argparse
import json
import os
import shutil
import struct

import numpy as np

LAYERS, HIDDEN, INTERMEDIATE, VOCAB, HEADS, KV_HEADS = 4, 128, 344, 1024, 4, 2
STAMP = "mergec-example-v1"


def shapes():
    kv = HIDDEN // HEADS * KV_HEADS
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        out += [(p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)), (p + "self_attn.k_proj.weight", (kv, HIDDEN)),
                (p + "self_attn.v_proj.weight", (kv, HIDDEN)), (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
                (p + "mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)), (p + "mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)),
                (p + "mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)),
                (p + "input_layernorm.weight", (HIDDEN,)), (p + "post_attention_layernorm.weight", (HIDDEN,))]
    return out + [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]


def to_bf16(x):
    """float32 -> bf16 bits, round to nearest even (the values here are finite)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def from_bf16(u16):
    return (u16.astype(np.uint32) << np.uint32(16)).view(np.float32)


def write_safetensors(path, tensors):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, arr in tensors.items():
        header[name] = {"dtype": "BF16", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for arr in tensors.values():
            f.write(arr.tobytes())


def write_model(directory, tensors):
    tmp = directory + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    write_safetensors(os.path.join(tmp, "model.safetensors"), tensors)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
              "intermediate_size": INTERMEDIATE, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
              "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB, "rms_norm_eps": 1e-5,
              "torch_dtype": "bfloat16", "mergec_example": STAMP}
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f, indent=2)
    with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}, f, indent=2)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)


def up_to_date(directory):
    lora = os.path.basename(directory).startswith("lora-")
    config, weights = (("adapter_config.json", "adapter_model.safetensors") if lora
                       else ("config.json", "model.safetensors"))
    try:
        with open(os.path.join(directory, config)) as f:
            ok = json.load(f).get("mergec_example") == STAMP
        return ok and os.path.isfile(os.path.join(directory, weights))
    except (OSError, ValueError):
        return False


def write_adapter(directory, seed, r=8, alpha=16):
    """A PEFT LoRA adapter on the base: keys base_model.model.<module>.lora_A.weight (r x in)
    and .lora_B.weight (out x r) for every linear layer, B nonzero (a trained adapter)."""
    tmp = directory + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tensors = {}
    for i, (name, shape) in enumerate(shapes()):
        module = name[:-len(".weight")]
        if len(shape) != 2 or module.split(".")[-1] not in LINEAR:
            continue
        rng = np.random.default_rng([seed, 100 + i])
        a = rng.standard_normal((r, shape[1]), dtype=np.float32) / np.float32(np.sqrt(shape[1]))
        b = 0.01 * rng.standard_normal((shape[0], r), dtype=np.float32)
        tensors["base_model.model." + module + ".lora_A.weight"] = to_bf16(a)
        tensors["base_model.model." + module + ".lora_B.weight"] = to_bf16(b)
    write_safetensors(os.path.join(tmp, "adapter_model.safetensors"), tensors)
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "base",
              "r": r, "lora_alpha": alpha, "lora_dropout": 0.05, "target_modules": list(LINEAR),
              "use_rslora": False, "use_dora": False, "fan_in_fan_out": False, "bias": "none",
              "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": None,
              "mergec_example": STAMP}
    with open(os.path.join(tmp, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)


LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTERS = ((3, "lora-math"), (4, "lora-code"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(here, "models"))
    args = parser.parse_args()
    names = ("base", "math", "code")
    adapters = [n for _, n in ADAPTERS]
    if all(up_to_date(os.path.join(args.out, n)) for n in names + tuple(adapters)):
        print("make_models: %s/{%s} already there" % (args.out, ",".join(names + tuple(adapters))))
        return
    os.makedirs(args.out, exist_ok=True)
    base = {}
    for i, (name, shape) in enumerate(shapes()):
        rng = np.random.default_rng([2024, i])
        if name.endswith("norm.weight"):
            v = 1 + 0.05 * rng.standard_normal(shape, dtype=np.float32)
        else:
            v = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(shape[-1]))
        base[name] = to_bf16(v)
    write_model(os.path.join(args.out, "base"), base)
    for seed, task in ((1, "math"), (2, "code")):
        tuned = {}
        for i, (name, shape) in enumerate(shapes()):
            rng = np.random.default_rng([seed, i])
            b = from_bf16(base[name])
            delta = 0.002 * rng.standard_normal(shape, dtype=np.float32)
            if len(shape) == 2:  # a rank-8 update, as a fine-tune would leave
                u = rng.standard_normal((shape[0], 8), dtype=np.float32)
                v = rng.standard_normal((8, shape[1]), dtype=np.float32)
                delta += (u @ v) * np.float32(0.02 / np.sqrt(8 * shape[1]))
            tuned[name] = to_bf16(b + delta)
        write_model(os.path.join(args.out, task), tuned)
    for seed, name in ADAPTERS:
        write_adapter(os.path.join(args.out, name), seed)
    total = sum(os.path.getsize(os.path.join(args.out, n, "model.safetensors")) for n in names)
    print("make_models: wrote %s/{base,math,code} (%.1f MB of bf16 weights) and {%s} (PEFT LoRA "
          "adapters, r = 8)" % (args.out, total / 1e6, ",".join(adapters)))


if __name__ == "__main__":
    main()
