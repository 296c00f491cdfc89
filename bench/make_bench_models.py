#!/usr/bin/python3
"""Writes benchmark checkpoints: a bf16 Llama-shaped base of about --params parameters and
(--models - 1) fine-tunes of it, as OUT/base and OUT/ft1, OUT/ft2, ... (model.safetensors,
config.json, tokenizer_config.json each).

Streams: every tensor is produced and written in chunks of CHUNK elements, and a fine-tune reads
the base back chunk by chunk (from the page cache), so memory stays at a few tens of MB whatever
the size. The values come from a pool of N(0, 1) samples taken at random offsets (numpy's normal
generator is slow on small machines); they are only there to be merged, not to be a model.

Usage: /usr/bin/python3 bench/make_bench_models.py --params 100M --models 4 --out bench/data
       /usr/bin/python3 bench/make_bench_models.py --params 1B --shape llama2-7b --out bench/data-1b
Idempotent: OUT/stamp.json records the settings; a matching one makes this a no-op."""
import argparse
import json
import multiprocessing
import os
import shutil
import struct
import sys
import time

import numpy as np

CHUNK = 1 << 20              # elements per write
POOL = 1 << 22               # normal samples in the pool each model draws from
VOCAB = 32000


def parse_count(text):
    t = text.strip().upper()
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9}.get(t[-1:], None)
    return int(float(t[:-1]) * scale) if scale else int(float(t))


def intermediate_of(h):
    return (8 * h // 3 + 63) // 64 * 64


# Fixed tensor shapes, the layer count taken from --params: (hidden, intermediate, kv width).
SHAPES = {"llama2-7b": (4096, 11008, 4096)}


def per_layer(h, inter=None, kv=None):
    inter = intermediate_of(h) if inter is None else inter
    kv = h // 4 if kv is None else kv
    return 2 * h * h + 2 * kv * h + 3 * h * inter + 2 * h


def choose_shape(params):
    """The smallest hidden size (from a Llama-like ladder) that needs at most 32 layers."""
    for h in (256, 384, 512, 768, 1024, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192):
        layers = (params - 2 * VOCAB * h - h) // per_layer(h)
        if 1 <= layers <= 32:
            return h, int(layers)
    h = 8192
    return h, max(1, int((params - 2 * VOCAB * h - h) // per_layer(h)))


def llama_shapes(h, layers, inter=None, kv=None):
    inter = intermediate_of(h) if inter is None else inter
    kv = h // 4 if kv is None else kv
    out = [("model.embed_tokens.weight", (VOCAB, h))]
    for i in range(layers):
        p = "model.layers.%d." % i
        out += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, h)),
                (p + "mlp.gate_proj.weight", (inter, h)), (p + "mlp.up_proj.weight", (inter, h)),
                (p + "mlp.down_proj.weight", (h, inter)),
                (p + "input_layernorm.weight", (h,)), (p + "post_attention_layernorm.weight", (h,))]
    return out + [("model.norm.weight", (h,)), ("lm_head.weight", (VOCAB, h))]


def header_bytes(shapes):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def to_bf16(f32, tmp, out):
    """float32 chunk -> bf16 bits in `out` (round to nearest even), using the scratch `tmp`."""
    bits = f32.view(np.uint32)
    np.right_shift(bits, 16, out=tmp)
    np.bitwise_and(tmp, 1, out=tmp)
    np.add(tmp, 0x7FFF, out=tmp)
    np.add(tmp, bits, out=tmp)
    np.right_shift(tmp, 16, out=tmp)
    out[...] = tmp


def write_model(directory, shapes, seed, base_file=None, noise=0.01):
    """Writes DIRECTORY/model.safetensors: base values (scale/sqrt(fan_in), norms near 1) or, with
    base_file, that file's values plus noise * N(0, 1)."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal(POOL, dtype=np.float32)
    pool = np.concatenate([pool, pool[:CHUNK]])  # any offset < POOL has CHUNK samples after it
    f32 = np.empty(CHUNK, np.float32)
    tmp = np.empty(CHUNK, np.uint32)
    u16 = np.empty(CHUNK, np.uint16)
    head = header_bytes(shapes)
    base = None
    if base_file is not None:  # read back chunk by chunk (plain reads: no mapping to grow RSS)
        base = open(base_file, "rb")
        base.seek(len(head))
        braw = np.empty(CHUNK, np.uint16)
    path = os.path.join(directory, "model.safetensors")
    with open(path + ".tmp", "wb") as f:
        f.write(head)
        for name, shape in shapes:
            n = int(np.prod(shape))
            norm = name.endswith("norm.weight")
            scale = np.float32(0.05 if norm else 1.0 / np.sqrt(shape[-1]))
            for start in range(0, n, CHUNK):
                m = min(CHUNK, n - start)
                off = int(rng.integers(0, POOL))
                x = f32[:m]
                if base is None:
                    np.multiply(pool[off:off + m], scale, out=x)
                    if norm:
                        x += np.float32(1)
                else:
                    if base.readinto(memoryview(braw[:m]).cast("B")) != 2 * m:
                        raise RuntimeError("%s: short read" % base_file)
                    np.left_shift(braw[:m], 16, out=tmp[:m], dtype=np.uint32)
                    x[...] = tmp[:m].view(np.float32)
                    x += pool[off:off + m] * np.float32(noise)
                to_bf16(x, tmp[:m], u16[:m])
                f.write(memoryview(u16[:m]).cast("B"))
    if base is not None:
        base.close()
    os.replace(path + ".tmp", path)


def write_side_files(directory, h, layers, inter, kv):
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
              "intermediate_size": inter, "num_hidden_layers": layers,
              "num_attention_heads": max(1, h // 64), "num_key_value_heads": max(1, kv // 64),
              "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16"}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)


def _finetune(job):
    directory, shapes, seed, base_file, h, layers, inter, kv = job
    write_model(directory, shapes, seed, base_file=base_file)
    write_side_files(directory, h, layers, inter, kv)
    return directory


def main():
    parser = argparse.ArgumentParser(description="bf16 Llama-shaped benchmark checkpoints")
    parser.add_argument("--params", default="100M", help="parameters per model: 100M, 1B, 1.5e9 ...")
    parser.add_argument("--models", type=int, default=4, help="the base plus MODELS-1 fine-tunes")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shape", choices=sorted(SHAPES),
                        help="fixed tensor shapes (llama2-7b: hidden 4096, intermediate 11008, "
                             "no GQA); the layer count comes from --params")
    args = parser.parse_args()

    params = parse_count(args.params)
    if args.shape:
        h, inter, kv = SHAPES[args.shape]
        layers = max(1, round((params - 2 * VOCAB * h - h) / per_layer(h, inter, kv)))
    else:
        h, layers = choose_shape(params)
        inter, kv = intermediate_of(h), h // 4
    shapes = llama_shapes(h, layers, inter, kv)
    total = sum(int(np.prod(s)) for _, s in shapes)
    names = ["base"] + ["ft%d" % i for i in range(1, args.models)]
    stamp = {"params": total, "hidden": h, "layers": layers, "models": names, "version": 1}
    if args.shape:
        stamp["shape"] = args.shape
    stamp_path = os.path.join(args.out, "stamp.json")
    if os.path.exists(stamp_path):
        with open(stamp_path) as f:
            if json.load(f) == stamp and all(
                    os.path.exists(os.path.join(args.out, n, "model.safetensors")) for n in names):
                print("make_bench_models: %s is up to date (%d models of %.1fM params)"
                      % (args.out, len(names), total / 1e6))
                return
    if os.path.isdir(args.out):
        for n in os.listdir(args.out):
            p = os.path.join(args.out, n)
            if n == "stamp.json" or (os.path.isdir(p) and (n == "base" or n.startswith("ft"))):
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    os.makedirs(args.out, exist_ok=True)

    t0 = time.time()
    print("make_bench_models: %d models of %.1fM params (hidden %d, %d layers, vocab %d), bf16, %.0f MB each"
          % (len(names), total / 1e6, h, layers, VOCAB, total * 2 / 1e6), flush=True)
    base_dir = os.path.join(args.out, "base")
    write_model(base_dir, shapes, seed=1000)
    write_side_files(base_dir, h, layers, inter, kv)
    base_file = os.path.join(base_dir, "model.safetensors")
    jobs = [(os.path.join(args.out, n), shapes, 1000 + i, base_file, h, layers, inter, kv) for i, n in enumerate(names) if i]
    if jobs:
        if args.jobs > 1 and len(jobs) > 1:
            with multiprocessing.Pool(min(args.jobs, len(jobs))) as pool:
                for d in pool.imap_unordered(_finetune, jobs):
                    pass
        else:
            for job in jobs:
                _finetune(job)
    with open(stamp_path, "w") as f:
        json.dump(stamp, f, indent=2)
    print("make_bench_models: wrote %s in %.1f s" % (args.out, time.time() - t0))


if __name__ == "__main__":
    sys.exit(main())
