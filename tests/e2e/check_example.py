"""examples/ stays runnable: make_models.py writes its three bf16 models (into the scratch
directory, so the checkout is untouched), a second call is a no-op, and
examples/task_arithmetic.merge, pointed at them with --model, merges to the numpy reference;
examples/lora_geomedian.merge merges the LoRA adapters it writes to the numpy geometric median
of their task vectors (alpha/r) B @ A and 0, added to the base."""
import json
import os
import subprocess
import sys

import numpy as np

import compare
import ref_methods as R
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

    # The LoRA example: geomedian of the adapters' task vectors and tv(base) = 0.
    out = os.path.join(work, "out-lora")
    cli = ["run", os.path.join(EXAMPLES, "lora_geomedian.merge"), "-o", out, "--quiet",
           "--model", "base=" + os.path.join(mdir, "base")]
    deltas = []
    for m in ("math", "code"):
        d = os.path.join(mdir, "lora-" + m)
        cli += ["--model", "%s=%s" % (m, d)]
        cfg = json.load(open(os.path.join(d, "adapter_config.json")))
        factors = st.read_safetensors(os.path.join(d, "adapter_model.safetensors"))
        scale = F(cfg["lora_alpha"] / cfg["r"])
        delta = {}
        for n in base:
            key = "base_model.model." + n[:-len(".weight")]
            if key + ".lora_A.weight" in factors:
                a = st.to_f32(*factors[key + ".lora_A.weight"])
                b = st.to_f32(*factors[key + ".lora_B.weight"])
                delta[n] = ((b @ a) * scale).astype(F)
            else:
                delta[n] = np.zeros_like(base[n])
        deltas.append(delta)
    runner.run_mergec(cli)
    actual = st.read_model(out)
    worst, within2, total = 0, 0, 0
    for n in base:
        want = st.from_f32("BF16", (base[n] + R.geomedian([deltas[0][n], deltas[1][n],
                                                            np.zeros_like(base[n])])).astype(F))
        a = compare.raw_bits("BF16", actual[n][1]).reshape(-1)
        e = compare.raw_bits("BF16", want).reshape(-1)
        dist = np.abs(compare.ordered("BF16", a) - compare.ordered("BF16", e))
        worst, within2, total = max(worst, int(dist.max())), within2 + int((dist <= 2).sum()), total + dist.size
    print("lora_geomedian: %d tensors, max ulp %d, within 2 ulp %d/%d" % (len(base), worst, within2, total))
    runner.expect(within2 >= 0.9995 * total, "too many elements beyond 2 ulp")


if __name__ == "__main__":
    runner.main(body)
