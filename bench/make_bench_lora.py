#!/usr/bin/python3
"""Writes a PEFT LoRA adapter (r = 16, lora_alpha = 32, bf16 factors, every linear layer) on a
benchmark base (bench/make_bench_models.py) into OUT/lora16, for timing `merge x` against
`merge base` (docs/benchmarks.md). Only the base's header is read.
Usage: /usr/bin/python3 bench/make_bench_lora.py --data bench/data"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e", "lib"))
import st  # noqa: E402

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="bench/data")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--name", default=None, help="the adapter's directory (default lora<RANK>)")
    args = ap.parse_args()
    with open(os.path.join(args.data, "base", "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    out = os.path.join(args.data, args.name or "lora%d" % args.rank)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or not name.endswith(".weight") or len(info["shape"]) != 2:
            continue
        module = name[:-len(".weight")]
        if module.split(".")[-1] not in LINEAR:
            continue
        rows, cols = info["shape"]
        a = (rng.standard_normal((args.rank, cols), dtype=np.float32) / np.float32(np.sqrt(cols)))
        b = 0.01 * rng.standard_normal((rows, args.rank), dtype=np.float32)
        tensors["base_model.model." + module + ".lora_A.weight"] = ("BF16", st.from_f32("BF16", a))
        tensors["base_model.model." + module + ".lora_B.weight"] = ("BF16", st.from_f32("BF16", b))
    st.write_safetensors(os.path.join(out, "adapter_model.safetensors"), tensors)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": args.rank, "lora_alpha": 2 * args.rank,
                   "target_modules": list(LINEAR), "use_rslora": False}, f, indent=2)
    print("make_bench_lora: %s (%d LoRA pairs)" % (out, len(tensors) // 2))


if __name__ == "__main__":
    main()
