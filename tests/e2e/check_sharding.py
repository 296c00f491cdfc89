"""Sharded checkpoints in and out: a base in 3 shards + index, one fine-tune named by its
.safetensors file, one by its directory; the output split by --shard-size.

  --shard-size SIZE   passed to mergec (none: the default, 5GB, so one file)
  --limit BYTES       what SIZE means in bytes (to check the shard sizes)
  --sharded           expect shards + an index: at least 2, none over the limit unless it holds a single tensor (without it: expect a
                      single model.safetensors)"""
import json
import os
import re

import numpy as np

import compare
import models
import runner
import st

F = np.float32
SIDE_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=50, num_layers=3, shards=3)
    a = models.make_llama(os.path.join(mdir, "a"), "bf16", seed=51, num_layers=3, base=base)
    b = models.make_llama(os.path.join(mdir, "b"), "bf16", seed=52, num_layers=3, base=base)
    runner.expect(sorted(f for f in os.listdir(os.path.join(mdir, "base")) if f.endswith(".safetensors")) ==
                  ["model-0000%d-of-00003.safetensors" % i for i in (1, 2, 3)], "the base is not in 3 shards")
    recipe = runner.write_recipe(os.path.join(work, "sharded.merge"), """
        model base = "models/base"
        model a    = "models/a/model.safetensors"
        model b    = "models/b"
        param lam  = 0.6
        merge {
          "lm_head.weight" | "*.embed_tokens.weight" => base
          _ => base + lam * (tv(a) + tv(b)) / 2
        }
        """)
    out = os.path.join(work, "out")
    cli = ["run", recipe, "-o", out, "--quiet"]
    if args.shard_size:
        cli += ["--shard-size", args.shard_size]
    runner.run_mergec(cli)

    files = runner.output_files(out)
    print("output files: %s" % " ".join(files))
    for f in SIDE_FILES:
        runner.expect(f in files, "%s not copied" % f)
        with open(os.path.join(out, f), "rb") as x, open(os.path.join(mdir, "base", f), "rb") as y:
            runner.expect(x.read() == y.read(), "%s is not a copy of the base's" % f)
    weights = [f for f in files if f not in SIDE_FILES]
    if not args.sharded:
        runner.expect(weights == ["model.safetensors"], "expected one model.safetensors, got %s" % weights)
    else:
        # The fewest shards an order-keeping split under the limit can have (greedy packing).
        fewest, used = 0, None
        for v in base.values():
            size = v.size * 2  # bf16
            if used is None or used + size > args.limit:
                fewest, used = fewest + 1, size
            else:
                used += size
        n = len(weights) - 1
        print("%d shards (the fewest possible: %d)" % (n, fewest))
        runner.expect(n >= max(2, fewest), "%d shards with --shard-size %d" % (n, args.limit))
        shard_names = ["model-%05d-of-%05d.safetensors" % (i + 1, n) for i in range(n)]
        runner.expect(weights == sorted(shard_names + ["model.safetensors.index.json"]),
                      "expected %d shards and an index, got %s" % (n, weights))
        with open(os.path.join(out, "model.safetensors.index.json")) as f:
            index = json.load(f)
        weight_map = index["weight_map"]
        runner.expect(set(weight_map) == set(base), "index weight_map names: %s" % sorted(set(weight_map) ^ set(base)))
        order, total = [], 0
        for s in shard_names:
            header, _, _ = st.read_header(os.path.join(out, s))
            names = sorted(header, key=lambda k: header[k]["data_offsets"][0])
            data = sum(h["data_offsets"][1] - h["data_offsets"][0] for h in header.values())
            print("%s: %d tensors, %d data bytes" % (s, len(names), data))
            runner.expect(len(names) > 0, s + " is empty")
            runner.expect(len(names) == 1 or data <= args.limit,
                          "%s holds %d bytes of tensors, over --shard-size %d" % (s, data, args.limit))
            for name in names:
                runner.expect(weight_map[name] == s, "index maps %s to %s, it is in %s" % (name, weight_map[name], s))
            order += names
            total += data
        runner.expect(order == list(base), "tensors across the shards are not in the base's order")
        if "metadata" in index and "total_size" in index["metadata"]:
            runner.expect(int(index["metadata"]["total_size"]) == total,
                          "index total_size %s, the shards hold %d" % (index["metadata"]["total_size"], total))

    lam = F(0.6)
    expected = {}
    for n_ in base:
        if n_ in ("lm_head.weight", "model.embed_tokens.weight"):
            expected[n_] = base[n_]
        else:
            expected[n_] = base[n_] + (lam * ((a[n_] - base[n_]) + (b[n_] - base[n_]))) / F(2)
    compare.assert_model(st.read_model(out), expected, max_ulp=1, expected_dtypes="BF16", order=list(base))


def add_args(p):
    p.add_argument("--shard-size", default=None)
    p.add_argument("--limit", type=int, default=5 * 10**9)
    p.add_argument("--sharded", action="store_true")


if __name__ == "__main__":
    runner.main(body, add_args)
