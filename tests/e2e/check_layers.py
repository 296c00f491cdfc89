"""layer, num_layers and ramp: ramp(v0, ..., vk) is piecewise linear over
t = layer / (num_layers - 1), with t = 0 for tensors outside model.layers.N (where layer = -1).

  --dtype bf16|f32
  --config MODE   `real`: config.json says num_hidden_layers = 12 (the real count); `none`: no
                  config.json, so num_layers = 1 + the largest layer index; `other`: config.json
                  says 16 while only 12 layers exist (config.json wins, with a warning naming
                  both, and none when no rule reads num_layers); `bad`: values of
                  num_hidden_layers that are not a positive integer are errors naming config.json
                  and leave no output."""
import json
import os

import numpy as np

import compare
import models
import runner
import st

F = np.float32
LAYERS = 12


def layer_of(name):
    p = name.split(".")
    if len(p) > 3 and p[0] == "model" and p[1] == "layers" and p[2].isdigit():
        return int(p[2])
    return -1


def ramp(anchors, layer, num_layers):
    """The reference: t = layer / (num_layers - 1) (0 outside the layers), clamped to [0, 1];
    x = t * k; on segment j (x >= j): v_j + (x - j) * (v_{j+1} - v_j). All in float32."""
    v = [F(x) for x in anchors]
    if len(v) == 1:
        return v[0]
    span = max(F(num_layers) - F(1), F(1))
    t = F(layer) / span if layer >= 0 else F(0)
    t = min(max(t, F(0)), F(1))
    k = len(v) - 1
    x = t * F(k)
    result = v[0]
    for j in range(k):
        if x >= F(j):
            result = v[j] + (x - F(j)) * (v[j + 1] - v[j])
    return F(result)


def warnings(stderr):
    return [line for line in stderr.splitlines() if "warning:" in line]


def check_bad_configs(work):
    mdir = os.path.join(work, "models")
    kw = dict(num_layers=2, hidden=32, intermediate=64, vocab=64)
    models.make_llama(os.path.join(mdir, "base"), "bf16", seed=40, **kw)
    recipe = runner.write_recipe(os.path.join(work, "plain.merge"), """
        model base = "models/base"
        merge base * 2
        """)
    config_path = os.path.join(mdir, "base", "config.json")
    config = json.load(open(config_path))
    for value in (0, -3, 12.5, "12", True, 12.0):
        config["num_hidden_layers"] = value
        with open(config_path, "w") as f:
            json.dump(config, f)
        out = os.path.join(work, "out")
        r = runner.run_mergec(["run", recipe, "-o", out, "--quiet"], expect=1, echo=False)
        print(r.stderr.strip())
        runner.expect("config.json: num_hidden_layers is" in r.stderr and "positive integer" in r.stderr,
                      "unclear error for %r:\n%s" % (value, r.stderr))
        runner.assert_no_output(out)
    print("bad num_hidden_layers: errors naming config.json, no output")


def body(args):
    work = runner.fresh_dir(args.work)
    if args.config == "bad":
        return check_bad_configs(work)
    mdir = os.path.join(work, "models")
    config = {"real": True, "none": False,
              "other": dict(models.llama_config(16, 32, 64, 64, models.DTYPE_NAMES[args.dtype]))}[args.config]
    num_layers = {"real": LAYERS, "none": LAYERS, "other": 16}[args.config]
    kw = dict(num_layers=LAYERS, hidden=32, intermediate=64, vocab=64)
    base = models.make_llama(os.path.join(mdir, "base"), args.dtype, seed=40, config=config, **kw)
    a = models.make_llama(os.path.join(mdir, "a"), args.dtype, seed=41, base=base, noise=0.1, config=config, **kw)
    recipe = runner.write_recipe(os.path.join(work, "layers.merge"), """
        model base = "models/base"
        model a    = "models/a"
        merge {
          "*.mlp.*"           => base + tv(a) * ramp(0, 1)
          "*.self_attn.*"     => base + tv(a) * ramp(0.2, 0.8, 0.5)
          "*layernorm.weight" => base * layer + num_layers
          "model.norm.weight" => base + layer * ramp(0.2, 0.8, 0.5) + num_layers
          _                   => base + tv(a) * ramp(0.25, 1, 0, 0.5)
        }
        """)
    out = os.path.join(work, "out")
    r = runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    for line in warnings(r.stderr):
        print(line)
    runner.expect(len(warnings(r.stderr)) == (1 if args.config == "other" else 0),
                  "warnings:\n" + r.stderr)
    if args.config == "other":
        # The warning is about num_layers: a merge that never reads it has nothing to warn about.
        plain = runner.write_recipe(os.path.join(work, "plain.merge"), """
            model base = "models/base"
            model a    = "models/a"
            merge base + tv(a) * layer
            """)
        r = runner.run_mergec(["run", plain, "-o", os.path.join(work, "out-plain"), "--quiet"])
        runner.expect(not warnings(r.stderr), "a warning without num_layers:\n" + r.stderr)
        print("no warning when no rule reads num_layers")

    nl = F(num_layers)
    expected = {}
    for n in base:
        L = layer_of(n)
        d = a[n] - base[n]
        if ".mlp." in n:
            e = base[n] + d * ramp([0, 1], L, num_layers)
        elif ".self_attn." in n:
            e = base[n] + d * ramp([0.2, 0.8, 0.5], L, num_layers)
        elif n.endswith("layernorm.weight"):
            e = base[n] * F(L) + nl
        elif n == "model.norm.weight":
            e = (base[n] + F(L) * ramp([0.2, 0.8, 0.5], L, num_layers)) + nl
        else:
            e = base[n] + d * ramp([0.25, 1, 0, 0.5], L, num_layers)
        expected[n] = e
    # The float32 formula above mirrors the lowering; check it against plain interpolation too
    # (mergekit's gradient: anchors evenly spaced over t in [0, 1]).
    for anchors in ([0, 1], [0.2, 0.8, 0.5], [0.25, 1, 0, 0.5]):
        for L in range(-1, LAYERS):
            t = max(L, 0) / (num_layers - 1)
            want = np.interp(t, np.linspace(0, 1, len(anchors)), anchors)
            runner.expect(abs(float(ramp(anchors, L, num_layers)) - want) < 1e-6,
                          "reference ramp%s at layer %d: %r, interpolation %r"
                          % (tuple(anchors), L, ramp(anchors, L, num_layers), want))
    for L in (-1, 0, 1, 5, 6, 11):
        print("layer %d: ramp(0, 1) = %.6g, ramp(0.2, 0.8, 0.5) = %.6g"
              % (L, ramp([0, 1], L, num_layers), ramp([0.2, 0.8, 0.5], L, num_layers)))
    compare.assert_model(st.read_model(out), expected, max_ulp=1,
                         expected_dtypes=models.DTYPE_NAMES[args.dtype], order=list(base))


def add_args(p):
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--config", default="real", choices=["real", "none", "other", "bad"])


if __name__ == "__main__":
    runner.main(body, add_args)
