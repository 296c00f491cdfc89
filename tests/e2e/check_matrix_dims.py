"""A rule with matrices (svd, @, ...) on a tensor of more than two dimensions is refused before
anything is written, naming the tensor and its shape; the same tensor under a rule without
matrices merges."""
import os

import numpy as np

import models
import runner


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    conv = ("BF16", np.ones((4, 3, 2), dtype=np.float32))
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=40, extra={"conv.weight": conv})
    models.make_llama(os.path.join(mdir, "a"), "bf16", seed=41, base=base,
                      extra={"conv.weight": ("BF16", 2 * np.ones((4, 3, 2), dtype=np.float32))})
    recipe = runner.write_recipe(os.path.join(work, "svd.merge"), """
        model base = "models/base"
        model a = "models/a"
        merge base + iso_c([tv(a)])
        """)
    out = os.path.join(work, "out")
    r = runner.run_mergec(["run", recipe, "-o", out], expect=1)
    print(r.stderr.strip().splitlines()[-1])
    runner.assert_no_output(out)
    ok = runner.write_recipe(os.path.join(work, "ok.merge"), """
        model base = "models/base"
        model a = "models/a"
        merge { "conv.weight" => base + tv(a)
                _ => base + iso_c([tv(a)]) }
        """)
    runner.run_mergec(["run", ok, "-o", out, "--quiet"])
    runner.expect(os.path.exists(os.path.join(out, "model.safetensors")), "no output")


if __name__ == "__main__":
    runner.main(body)
