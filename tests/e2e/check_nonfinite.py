"""Outputs that become NaN or inf where the inputs were finite are counted per tensor and reported
as one warning naming the tensors (the first five, then a count); --strict makes it an error that
leaves no output. The counts are checked exactly against numpy:

  * linear(weights = [1, -1]) normalizes by a weight sum of 0: (a - b) / 0 is NaN where a == b,
    else inf (six mlp tensors);
  * `base * big` with `--set big=1e39`: 1e39 is inf in f32 (model.norm.weight);
  * `base * 1e6` stored as f16 (--dtype f16) overflows where |x| rounds above 65504.

No warning for an ordinary merge, nor for a tensor whose NaN came with an input."""
import os
import re

import numpy as np

import models
import runner
import st

F = np.float32


def warnings(stderr):
    return [line for line in stderr.splitlines() if "warning:" in line]


def counts(dtype, arr):
    x = st.to_f32(dtype, arr)
    return int(np.count_nonzero(np.isnan(x))), int(np.count_nonzero(np.isinf(x)))


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    kw = dict(num_layers=2, hidden=64, intermediate=128, vocab=256)
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=80, **kw)
    a = models.make_llama(os.path.join(mdir, "a"), "bf16", seed=81, base=base, **kw)
    # b equals a on about half of each tensor, so 0/0 (NaN) and x/0 (inf) both occur.
    b_t = {}
    rng = np.random.default_rng(7)
    for name, value in a.items():
        other = base[name] + F(0.02) * rng.standard_normal(value.shape).astype(F)
        b_t[name] = ("BF16", st.from_f32("BF16", np.where(rng.random(value.shape) < 0.5, value, other)))
    # One input NaN: that tensor's NaN output comes from the data, not the merge.
    poisoned = "model.layers.0.self_attn.q_proj.weight"
    b_t[poisoned][1].reshape(-1)[5] = 0x7FC0
    models.write_model_dir(os.path.join(mdir, "b"), b_t, config=models.llama_config(2, 64, 128, 256, "BF16"))
    b = {n: st.to_f32(*v) for n, v in b_t.items()}

    recipe = runner.write_recipe(os.path.join(work, "nonfinite.merge"), """
        model base = "models/base"
        model a    = "models/a"
        model b    = "models/b"
        param big  = 1
        merge {
          "*.mlp.*"           => linear([a, b], weights = [1, -1])
          "model.norm.weight" => base * big
          "*.q_proj.weight"   => base + tv(a) - tv(b)
          _                   => linear([a, b])
        }
        """)
    out = os.path.join(work, "out")
    r = runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--set", "big=1e39"])
    got = st.read_model(out)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = {n: (a[n] - b[n]) / F(0) for n in a if ".mlp." in n}
    expected["model.norm.weight"] = base["model.norm.weight"] * F(np.inf)
    order = [n for n in base if n in expected]
    for n in order:
        want = (int(np.count_nonzero(np.isnan(expected[n]))), int(np.count_nonzero(np.isinf(expected[n]))))
        runner.expect(counts(*got[n]) == want, "%s: %s NaN/inf in the output, expected %s" % (n, counts(*got[n]), want))
    ws = warnings(r.stderr)
    print("\n".join(ws))
    runner.expect(len(ws) == 1, "one warning expected:\n" + r.stderr)
    listed = re.findall(r"'([^']+)' \((?:(\d+) NaN)?(?:, )?(?:(\d+) inf)?\)", ws[0])
    runner.expect([n for n, _, _ in listed] == order[:5], "listed %s, expected %s" % (listed, order[:5]))
    for n, nan, inf in listed:
        want = (int(np.count_nonzero(np.isnan(expected[n]))), int(np.count_nonzero(np.isinf(expected[n]))))
        runner.expect((int(nan or 0), int(inf or 0)) == want, "%s: warning says %s/%s, expected %s" % (n, nan, inf, want))
    runner.expect("%d tensors hold" % len(order) in ws[0] and "and %d more" % (len(order) - 5) in ws[0],
                  "count of tensors in: " + ws[0])
    runner.expect(counts(*got[poisoned])[0] >= 1 and poisoned not in ws[0], "the poisoned tensor is listed")
    print("warning: %d tensors, counts exact; the NaN an input brought is not reported" % len(order))

    # --strict: an error naming the first such tensor; nothing at OUT.
    strict_out = os.path.join(work, "out-strict")
    r = runner.run_mergec(["run", recipe, "-o", strict_out, "--quiet", "--set", "big=1e39", "--strict"], expect=1)
    print(r.stderr.strip())
    runner.expect("--strict: tensor '%s'" % order[0] in r.stderr, "strict error:\n" + r.stderr)
    runner.assert_no_output(strict_out)
    print("--strict: exit 1, nothing left at the output path")

    # f16 overflow: |base * 1e6| above 65504 rounds to inf when stored.
    f16 = runner.write_recipe(os.path.join(work, "f16.merge"), """
        model base = "models/base"
        merge {
          "*.o_proj.weight" => base * 1000000
          _                 => base
        }
        """)
    out16 = os.path.join(work, "out16")
    r = runner.run_mergec(["run", f16, "-o", out16, "--quiet", "--dtype", "f16"])
    got = st.read_model(out16)
    ws = warnings(r.stderr)
    print("\n".join(ws))
    names = [n for n in base if n.endswith(".o_proj.weight")]
    with np.errstate(over="ignore"):
        want = {n: int(np.count_nonzero(np.isinf(st.to_f32("F16", st.from_f32("F16", base[n] * F(1000000)))))) for n in names}
    for n in names:
        runner.expect(counts(*got[n]) == (0, want[n]) and want[n] > 0, "%s: %s, expected %d inf" % (n, counts(*got[n]), want[n]))
        runner.expect("'%s' (%d inf)" % (n, want[n]) in ws[0], "%s not in the warning" % n)
    runner.expect(len(ws) == 1 and "2 tensors hold" in ws[0], "f16 warning:\n" + r.stderr)
    print("f16 overflow: %s inf, reported" % ", ".join(str(want[n]) for n in names))

    # An ordinary merge warns about nothing.
    plain = runner.write_recipe(os.path.join(work, "plain.merge"), """
        model base = "models/base"
        model a    = "models/a"
        merge base + 0.5 * tv(a)
        """)
    r = runner.run_mergec(["run", plain, "-o", os.path.join(work, "out-plain"), "--quiet", "--strict"])
    runner.expect(not warnings(r.stderr), "warning for an ordinary merge:\n" + r.stderr)
    print("ordinary merge: no warning, --strict passes")


if __name__ == "__main__":
    runner.main(body)
