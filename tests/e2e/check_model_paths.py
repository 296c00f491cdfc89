"""How models are found and which one shapes the output:
  - a base named by its .safetensors file (its directory's config.json and tokenizer files are
    still copied);
  - a recipe without a model named `base`, using only tv(m, from = x): the output follows the
    first model declared (names, order, dtype);
  - a base whose JSON header lists the tensors alphabetically (as the safetensors library writes
    it) while the data is in another order: read by data_offsets, output in the base's data order;
  - --model base=PATH replacing the base (relative to the working directory)."""
import json
import os
import struct

import numpy as np

import compare
import models
import runner
import st

F = np.float32
SIDE_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]


def write_alphabetical_header(src_dir, dst_dir):
    """Rewrites src_dir's model.safetensors into dst_dir with the header keys sorted by name
    (data kept in its original order) and no __metadata__."""
    tensors = st.read_model(src_dir)
    header, off = {}, 0
    for n, (d, a) in tensors.items():
        header[n] = {"dtype": d, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    text = json.dumps({k: header[k] for k in sorted(header)}).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(dst_dir, exist_ok=True)
    with open(os.path.join(dst_dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for d, a in tensors.values():
            f.write(a.tobytes())
    runner.expect(list(json.loads(text)) != list(tensors), "the header order did not change")


def check_side_files(out, src):
    files = runner.output_files(out)
    for f in SIDE_FILES:
        runner.expect(f in files, "%s not copied from %s" % (f, src))
        with open(os.path.join(out, f), "rb") as x, open(os.path.join(src, f), "rb") as y:
            runner.expect(x.read() == y.read(), "%s is not %s's" % (f, src))


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=80)
    a = models.make_llama(os.path.join(mdir, "a"), "f16", seed=81, base=base)
    b = models.make_llama(os.path.join(mdir, "b"), "bf16", seed=82, base=base)
    order = list(base)

    def ta(x, y):  # x + (y - x) * 0.5, the recipe below with base = x, a = y
        return {n: x[n] + (y[n] - x[n]) * F(0.5) for n in x}

    # 1. The base named by its file.
    recipe = runner.write_recipe(os.path.join(work, "file.merge"), """
        model base = "models/base/model.safetensors"
        model a    = "models/a"
        merge base + tv(a) * 0.5
        """)
    out = os.path.join(work, "out-file")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    check_side_files(out, os.path.join(mdir, "base"))
    compare.assert_model(st.read_model(out), ta(base, a), expected_dtypes="BF16", order=order)

    # 2. No model named base: the first model declared (f16 here) shapes the output.
    recipe = runner.write_recipe(os.path.join(work, "nobase.merge"), """
        model first  = "models/a"
        model second = "models/b"
        merge first + tv(second, from = first) * 0.5
        """)
    out = os.path.join(work, "out-nobase")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    check_side_files(out, os.path.join(mdir, "a"))
    compare.assert_model(st.read_model(out), ta(a, b), expected_dtypes="F16", order=order)

    # 3. A header in alphabetical order, without __metadata__.
    write_alphabetical_header(os.path.join(mdir, "base"), os.path.join(mdir, "alpha"))
    recipe = runner.write_recipe(os.path.join(work, "alpha.merge"), """
        model base = "models/alpha"
        model a    = "models/a"
        merge base + tv(a) * 0.5
        """)
    out = os.path.join(work, "out-alpha")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    compare.assert_model(st.read_model(out), ta(base, a), expected_dtypes="BF16", order=order)

    # 4. --model base=PATH, relative to the working directory: b becomes the base.
    out = os.path.join(work, "out-override")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--model", "base=models/b"], cwd=work)
    check_side_files(out, os.path.join(mdir, "b"))
    compare.assert_model(st.read_model(out), ta(b, a), expected_dtypes="BF16", order=order)


if __name__ == "__main__":
    runner.main(body)
