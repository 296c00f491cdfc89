"""examples/ stays runnable: make_models.py writes its three bf16 models (into the scratch
directory, so the checkout is untouched), a second call is a no-op, and
examples/task_arithmetic.merge, pointed at them with --model, merges to the numpy reference."""
import os
import subprocess
import sys

import numpy as np

import compare
import runner
import st

F = np.float32
EXAMPLES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    for _ in range(2):
        p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "make_models.py"), "--out", mdir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        print(p.stdout, end="")
        runner.expect(p.returncode == 0, "make_models.py failed")
    base, math, code = (st.read_model_f32(os.path.join(mdir, m)) for m in ("base", "math", "code"))
    out = os.path.join(work, "out")
    cli = ["run", os.path.join(EXAMPLES, "task_arithmetic.merge"), "-o", out, "--quiet"]
    for m in ("base", "math", "code"):
        cli += ["--model", "%s=%s" % (m, os.path.join(mdir, m))]
    runner.run_mergec(cli)
    lam = F(0.8)
    expected = {}
    for n in base:
        if n == "lm_head.weight" or n.endswith(".embed_tokens.weight"):
            expected[n] = base[n]
        else:
            expected[n] = base[n] + (lam * ((math[n] - base[n]) + (code[n] - base[n]))) / F(2)
    compare.assert_model(st.read_model(out), expected, max_ulp=1, expected_dtypes="BF16", order=list(base))


if __name__ == "__main__":
    runner.main(body)
