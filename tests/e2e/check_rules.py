"""A multi-rule recipe: every output tensor must come from the first rule whose patterns match
its name (globs with '*', '?', classes, negated classes, alternatives), copies must be byte
copies (integer and f64 buffers included), and a pattern that matches nothing is a warning.

The rule each tensor should take is written out below by hand (not by a glob implementation),
and each rule computes something different, so a tensor that took the wrong rule fails."""
import os

import numpy as np

import compare
import models
import runner
import st

F = np.float32


def expected_rule(name):
    """The rule (its index in the recipe) that must produce `name`."""
    if name in ("lm_head.weight", "model.embed_tokens.weight"):
        return 0
    if name in ("model.position_ids", "model.rope_scale"):
        return 1
    layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
    if layer in (1, 2) and name.endswith("mlp.down_proj.weight"):
        return 2
    if ".mlp." in name:
        return 3
    if layer is not None and layer != 0 and (name.endswith("q_proj.weight") or name.endswith("k_proj.weight")):
        return 4
    if ".self_attn." in name:
        return 5
    if name.endswith("layernorm.weight"):
        return 6
    return 8  # '_': model.norm.weight


def body(args):
    work = runner.fresh_dir(args.work)
    extra = {
        "model.position_ids": ("I64", np.arange(24, dtype=np.int64).reshape(2, 12) - 5),
        "model.rope_scale": ("F64", np.array([0.5, 1.0 / 3.0, -2.25], dtype=np.float64)),
    }
    mdir = os.path.join(work, "models")
    kw = dict(num_layers=3, extra=extra)
    base = models.make_llama(os.path.join(mdir, "base"), "f16", seed=20, **kw)
    a = models.make_llama(os.path.join(mdir, "a"), "f16", seed=21, base=base, **kw)
    b = models.make_llama(os.path.join(mdir, "b"), "f16", seed=22, base=base, **kw)
    recipe = runner.write_recipe(os.path.join(work, "rules.merge"), """
        model base = "models/base"
        model a    = "models/a"
        model b    = "models/b"
        param w    = 0.25
        merge {
          "lm_head.weight" | "*.embed_tokens.weight"       => base                          # 0
          "*.position_ids" | "model.rope_scale"             => base                          # 1
          "model.layers.[1-2].mlp.down_proj.weight"         => b - a                         # 2
          "model.layers.*.mlp.*"                            => base + sum([tv(a), tv(b)])    # 3
          "model.layers.[!0].self_attn.{q,k}_proj.weight"   => a                             # 4
          "model.layers.?.self_attn.?_proj.weight"          => b                             # 5
          "*layernorm.weight"                               => (a + b) * w                   # 6
          "model.nothing.*"                                 => a                             # 7: no tensor
          _                                                 => base - tv(a) * w              # 8
        }
        """)
    out = os.path.join(work, "out")
    r = runner.run_mergec(["run", recipe, "-o", out])
    print("stderr:\n" + r.stderr)
    runner.expect(r.stdout == "", "mergec run wrote to stdout (progress belongs on stderr):\n" + r.stdout)
    runner.expect("warning" in r.stderr and "model.nothing.*" in r.stderr,
                  "no warning for the pattern that matches nothing:\n" + r.stderr)

    w = F(0.25)
    refs = {
        2: lambda n: b[n] - a[n],
        3: lambda n: base[n] + ((a[n] - base[n]) + (b[n] - base[n])),
        4: lambda n: a[n],
        5: lambda n: b[n],
        6: lambda n: (a[n] + b[n]) * w,
        8: lambda n: base[n] - (a[n] - base[n]) * w,
    }
    src = st.read_model(os.path.join(mdir, "base"))
    actual = st.read_model(out)
    runner.expect(list(actual) == list(src), "output order %s, expected the base's %s" % (list(actual), list(src)))
    counts = {}
    for n in src:
        rule = expected_rule(n)
        counts[rule] = counts.get(rule, 0) + 1
        dtype, arr = actual[n]
        print("rule %d: " % rule, end="")
        if rule in (0, 1):
            compare.assert_copy(n, dtype, arr, *src[n])
        else:
            compare.assert_tensor(n, dtype, arr, refs[rule](n), max_ulp=1, expected_dtype="F16")
        if rule in (4, 5):  # a plain model reference of another model: its values exactly
            runner.expect(np.array_equal(st.to_f32(dtype, arr), (a if rule == 4 else b)[n]), n + ": not a copy")
    print("tensors per rule: %s" % sorted(counts.items()))
    runner.expect(sorted(counts) == [0, 1, 2, 3, 4, 5, 6, 8], "some rule was not exercised: %s" % counts)


if __name__ == "__main__":
    runner.main(body)
