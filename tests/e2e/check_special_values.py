"""Rounding and special values, where the contract leaves no slack (0 ulp): f32 inputs holding
halfway cases for bf16 and f16, values that overflow each, denormals, signed zeros, infinities and
NaN, plus a 0-d tensor and an empty one, merged to --dtype bf16 / f16 / f32 (and the same values
stored as bf16 or f16 in, --inputs). Every element is
computed in f32 and rounded once to nearest even; a copy with another output dtype is one rounding
too. Shapes (the 0-d one included) must be kept."""
import os

import numpy as np

import compare
import models
import runner
import st

F = np.float32

SPECIAL = np.array([
    1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1 + 2**-8 + 2**-20,  # bf16 halfway / just above
    1 + 2**-11, 1 + 3 * 2**-11, 2049, 2051,                        # f16 halfway
    3.3961e38, 3.4e38, -3.4e38, 3.389e38,                          # bf16 overflow to inf or not
    65504, 65519, 65520, -65520, 70000,                            # f16 max, halfway, overflow
    2**-24, 2**-25, 1.5 * 2**-25, 2**-14 - 2**-25,                  # f16 denormals
    1e-40, -1e-40, 2**-149, 2**-126,                               # f32 denormals
    0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan,
], dtype=F)


def wide_matrix(seed, shape):
    """Random signs, mantissas and exponents over most of the f32 range (denormals included)."""
    rng = np.random.default_rng(seed)
    mant = rng.random(shape, dtype=F) + F(1)
    exp = rng.integers(-150, 127, shape)
    sign = np.where(rng.random(shape) < 0.5, F(-1), F(1))
    return (sign * np.ldexp(mant, exp)).astype(F)


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    rng = np.random.default_rng(5)
    kinds = {
        "values": (SPECIAL, np.concatenate([SPECIAL[::-1], SPECIAL[:1]])[:SPECIAL.size]),
        "scalar": (np.array(2.5, dtype=F), np.array(-0.75, dtype=F)),
        "empty": (np.zeros((0, 4), dtype=F), np.zeros((0, 4), dtype=F)),
        "matrix": (wide_matrix(1, (64, 48)), wide_matrix(2, (64, 48))),
        "normal": (rng.standard_normal((32, 32), dtype=F), rng.standard_normal((32, 32), dtype=F)),
    }
    base_t, other_t = {}, {}
    idt = models.DTYPE_NAMES[args.inputs]
    with np.errstate(over="ignore"):
        for prefix in ("copy", "sum", "scaled"):
            for kind, (x, y) in kinds.items():
                name = "special.%s.%s" % (prefix, kind)
                base_t[name] = (idt, st.from_f32(idt, x))
                other_t[name] = (idt, st.from_f32(idt, y))
    cfg = {"num_hidden_layers": 1}
    models.write_model_dir(os.path.join(mdir, "base"), base_t, config=cfg)
    models.write_model_dir(os.path.join(mdir, "other"), other_t, config=cfg)
    recipe = runner.write_recipe(os.path.join(work, "special.merge"), """
        model base  = "models/base"
        model other = "models/other"
        merge {
          "special.copy.*" => base
          "special.sum.*"  => base + other
          _                => base * 0.5
        }
        """)
    out = os.path.join(work, "out")
    cli = ["run", recipe, "-o", out, "--quiet"]
    if args.dtype != args.inputs:
        cli += ["--dtype", args.dtype]
    runner.run_mergec(cli)

    expected = {}
    with np.errstate(over="ignore", invalid="ignore"):
        for name, (_, x) in base_t.items():
            x, y = st.to_f32(idt, x), st.to_f32(idt, other_t[name][1])
            if ".copy." in name:
                expected[name] = x
            elif ".sum." in name:
                expected[name] = x + y
            else:
                expected[name] = x * F(0.5)
        compare.assert_model(st.read_model(out), expected, max_ulp=0,
                             expected_dtypes=models.DTYPE_NAMES[args.dtype], order=list(base_t))
    if args.dtype == args.inputs:  # a copy to its own dtype keeps every bit, NaN payloads included
        actual = st.read_model(out)
        for name in base_t:
            if ".copy." in name:
                compare.assert_copy(name, *actual[name], *base_t[name])


def add_args(p):
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"], help="the output dtype")
    p.add_argument("--inputs", default="f32", choices=["bf16", "f16", "f32"], help="the models' dtype")


if __name__ == "__main__":
    runner.main(body, add_args)
