#!/usr/bin/env python3
"""Deterministic Llama-shaped checkpoints for the GPU check: a base and three fine-tunes
(base + small deltas), numpy only, written in parallel.

  make_models.py --size small   --out DIR   # correctness: 6 layers with odd shapes (257 x 385,
                                            # 129 x 257, ...), ~7 MB a model; the 1031 x 257
                                            # embedding and lm_head are > 3 x 65536 elements
  make_models.py --size layer7b --out DIR   # kernel benchmark: --tensors N (default 4) tensors
                                            # of 4096 x 14336, 470 MB a model in bf16
  make_models.py --size 1b      --out DIR   # end to end: Llama-7B shapes (hidden 4096,
                                            # intermediate 11008, vocab 32000), --layers 4:
                                            # 1.07B parameters, 2.1 GB a model in bf16

Writes DIR/base, DIR/a, DIR/b, DIR/c (model.safetensors, config.json with num_hidden_layers,
generation_config.json, tokenizer_config.json). Values: base ~ N(0, 1) / sqrt(cols) (norms
1 + 0.1 N(0, 1)); fine-tune k = base (as stored) + delta_k, delta ~ 5% of the base's scale;
c's delta is exactly zero on ~30% of the elements (so c equals base there, bit for bit). Every
piece of a tensor is seeded by (seed, tensor, piece): the bytes do not depend on --jobs.
--delta fast (the default for layer7b and 1b) draws the deltas from random bytes (uniform)
instead of normals: ~3x faster. Models already written with the same settings are reused.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stio  # noqa: E402

MODELS = ("base", "a", "b", "c")
PIECE = 1 << 22  # elements per work item (rows of a tensor)
SIZES = {
    "small": dict(layers=6, hidden=257, kv=129, intermediate=385, vocab=1031),
    "1b": dict(layers=4, hidden=4096, kv=4096, intermediate=11008, vocab=32000),
}


def llama_layout(layers, hidden, kv, intermediate, vocab):
    out = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = "model.layers.%d." % i
        out += [(p + "self_attn.q_proj.weight", (hidden, hidden)), (p + "self_attn.k_proj.weight", (kv, hidden)),
                (p + "self_attn.v_proj.weight", (kv, hidden)), (p + "self_attn.o_proj.weight", (hidden, hidden)),
                (p + "mlp.gate_proj.weight", (intermediate, hidden)), (p + "mlp.up_proj.weight", (intermediate, hidden)),
                (p + "mlp.down_proj.weight", (hidden, intermediate)),
                (p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,))]
    return out + [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]


def layout(args):
    """[(name, shape)] and the config.json fields."""
    if args.size == "layer7b":
        names = [("model.layers.%d.mlp.down_proj.weight" % i, (4096, 14336)) for i in range(args.tensors)]
        return names, dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=args.tensors,
                           vocab_size=32000)
    s = dict(SIZES[args.size])
    if args.layers is not None:
        s["layers"] = args.layers
    return llama_layout(**s), dict(hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                                   num_hidden_layers=s["layers"], vocab_size=s["vocab"])


def pieces(shapes):
    """Work items: (tensor index, piece index, first row, end row)."""
    out = []
    for t, (_, shape) in enumerate(shapes):
        rows = shape[0] if len(shape) == 2 else 1
        cols = shape[-1] if shape else 1
        per = max(1, PIECE // max(cols, 1))
        for p, r0 in enumerate(range(0, rows, per)):
            out.append((t, p, r0, min(rows, r0 + per)))
    return out


_CTX = {}


def _init(ctx):
    _CTX.update(ctx)


def _piece(item):
    """Generates one piece of one tensor for every model and writes it in place."""
    t, p, r0, r1 = item
    c = _CTX
    name, shape = c["shapes"][t]
    dtype, seed = c["dtype"], c["seed"]
    cols = shape[-1] if shape else 1
    n = (r1 - r0) * cols if len(shape) == 2 else (int(np.prod(shape)) if shape else 1)
    is_norm = len(shape) < 2
    rng = np.random.default_rng([seed, t, p])
    x = rng.standard_normal(n, dtype=np.float32)
    if is_norm:
        x *= np.float32(0.1)
        x += np.float32(1)
        scale = np.float32(0.1 * 0.05)
    else:
        x *= np.float32(1.0 / np.sqrt(cols))
        scale = np.float32(0.05 / np.sqrt(cols))
    base = stio.encode(dtype, x)
    stored = [base]
    base_f32 = stio.bf16_to_f32(base) if dtype == "BF16" else base.astype(np.float32)
    for k in range(1, len(c["models"])):
        r = np.random.default_rng([seed, 1000 + k, t, p])
        if c["delta"] == "fast":
            raw = np.frombuffer(r.bytes(n), dtype=np.int8)
            d = raw.astype(np.float32)
            d *= np.float32(scale / 73.9)  # uniform on [-128, 127]: std 73.9
            if k == 3:
                d[np.abs(raw.astype(np.int16)) < 38] = 0  # ~30% of the elements
        else:
            d = r.standard_normal(n, dtype=np.float32)
            d *= scale
            if k == 3:
                d[r.random(n, dtype=np.float32) < 0.3] = 0
        d += base_f32
        stored.append(stio.encode(dtype, d))
    itemsize = stio.ITEMSIZE[dtype]
    start = c["data_start"] + c["offsets"][name][0] + (r0 * cols * itemsize if len(shape) == 2 else 0)
    for path, arr in zip(c["paths"], stored):
        fd = os.open(path, os.O_WRONLY)
        try:
            view = memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], start + done)
        finally:
            os.close(fd)
    return n * len(stored) * itemsize


def stamp_of(args):
    return {"size": args.size, "dtype": args.dtype, "seed": args.seed, "tensors": args.tensors,
            "layers": args.layers, "delta": args.delta, "models": list(args.models), "version": 1}


def up_to_date(directory, stamp):
    try:
        with open(os.path.join(directory, "config.json")) as f:
            return json.load(f).get("mergec_gpu_check") == stamp and \
                os.path.isfile(os.path.join(directory, "model.safetensors"))
    except (OSError, ValueError):
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("small", "layer7b", "1b"), default="small")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=("bf16", "f16", "f32"), default="bf16")
    ap.add_argument("--tensors", type=int, default=4, help="layer7b: number of 4096 x 14336 tensors")
    ap.add_argument("--layers", type=int, default=None, help="small/1b: number of layers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delta", choices=("normal", "fast"), default=None)
    ap.add_argument("--models", default=",".join(MODELS), help="names, the first is the base")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    args.models = args.models.split(",")
    if args.delta is None:
        args.delta = "normal" if args.size == "small" else "fast"
    dtype = args.dtype.upper()
    shapes, cfg = layout(args)
    stamp = stamp_of(args)
    dirs = [os.path.join(args.out, m) for m in args.models]
    if all(up_to_date(d, stamp) for d in dirs):
        print("make_models: %s/{%s} already there (%s)" % (args.out, ",".join(args.models), args.size))
        return 0
    t0 = time.time()
    header, offsets, total = stio.header_bytes([(n, dtype, s) for n, s in shapes], {"format": "pt"})
    tmps, paths = [], []
    for d in dirs:
        tmp = d + ".tmp-make"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        path = os.path.join(tmp, "model.safetensors")
        with open(path, "wb") as f:
            f.write(header)
            f.truncate(len(header) + total)
        tmps.append(tmp)
        paths.append(path)
    ctx = dict(shapes=shapes, dtype=dtype, seed=args.seed, delta=args.delta, models=args.models,
               paths=paths, offsets=offsets, data_start=len(header))
    items = pieces(shapes)
    # big pieces first so that the pool's tail is short
    items.sort(key=lambda it: -(it[3] - it[2]) * (shapes[it[0]][1][-1] if shapes[it[0]][1] else 1))
    jobs = max(1, min(args.jobs, len(items)))
    if jobs == 1:
        _init(ctx)
        written = sum(_piece(it) for it in items)
    else:
        with multiprocessing.get_context("fork").Pool(jobs, _init, (ctx,)) as pool:
            written = sum(pool.imap_unordered(_piece, items, chunksize=1))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_attention_heads": 32,
              "num_key_value_heads": 32, "rms_norm_eps": 1e-5,
              "torch_dtype": {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[dtype],
              "mergec_gpu_check": stamp}
    config.update(cfg)
    for d, tmp in zip(dirs, tmps):
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        with open(os.path.join(tmp, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": 1, "eos_token_id": 2}, f)
        with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}, f)
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)
    dt = time.time() - t0
    params = sum(int(np.prod(s)) for _, s in shapes)
    print("make_models: %s: %d models x %d tensors, %.3fB parameters, %.2f GB written in %.2f s "
          "(%.2f GB/s, %d jobs) -> %s" % (args.size, len(dirs), len(shapes), params / 1e9, written / 1e9,
                                          dt, written / 1e9 / max(dt, 1e-9), jobs, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
