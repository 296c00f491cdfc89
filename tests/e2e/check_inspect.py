"""mergec inspect against numpy: every tensor's and every kind's cosine (1e-5 relative), sign
agreement counts (exact), norms and TIES top-k shares, the JSON schema, the PNG heat map
(decoded: size, every cell's colour) and the errors."""
import json
import os

import numpy as np

import inspect_ref
import models
import runner
import st


def case_statistics(work):
    paths = inspect_ref.make_models(os.path.join(work, "models"))
    names = ("a", "b", "c")
    png = os.path.join(work, "sim.png")
    r = runner.run_mergec(["inspect", paths["base"]] + [paths[n] for n in names] +
                          ["--json", "--png", png, "--threads", "2"])
    report = json.loads(r.stdout)
    base = st.read_model_f32(paths["base"])
    finetunes = [st.read_model_f32(paths[n]) for n in names]
    worst, rows = inspect_ref.check_report(report, base, finetunes)
    print("json: %d rows match numpy, worst relative error %.1e" % (rows, worst))
    runner.expect([m["name"] for m in report["models"]] == list(names), "model names %r" % report["models"])
    zero = [t for t in report["tensors"] if t["name"] == "model.layers.1.input_layernorm.weight"][0]
    runner.expect(zero["pairs"][0]["cosine"] is None and zero["models"][1]["topk_kept"] is None,
                  "an all-zero task vector's cosine and top-k share are null")
    cos_ab = [k for k in report["kinds"] if k["kind"] == "mlp.up_proj.weight"][0]["pairs"][0]["cosine"]
    runner.expect(0.6 < cos_ab < 0.8, "a/b cosine %r, expected about 0.7" % cos_ab)
    print("a/b cosine over mlp.up_proj: %.4f; null where a task vector is zero" % cos_ab)
    with open(png, "rb") as f:
        cells = inspect_ref.check_png(f.read(), report)
    print("png: %d cells decoded with the expected colours" % cells)

    # The table: a row per tensor and per kind, the same numbers.
    table = runner.run_mergec(["inspect", paths["base"], paths["a"], paths["b"], "--density", "0.5"]).stdout
    print(table.splitlines()[4])
    runner.expect(table.count("self_attn.q_proj.weight") == 3, "q_proj rows: 2 layers and the summary")
    runner.expect("top50%" in table, "--density 0.5 names the top50% column")


def case_errors(work):
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=1)
    models.make_llama(os.path.join(mdir, "a"), "bf16", seed=2, base=base)
    models.make_llama(os.path.join(mdir, "shape"), "bf16", seed=3,
                      reshape={"model.layers.1.mlp.up_proj.weight": (64, 128)})
    models.make_llama(os.path.join(mdir, "missing"), "bf16", seed=4, base=base,
                      drop=("model.layers.0.self_attn.v_proj.weight",))
    models.make_llama(os.path.join(mdir, "extra"), "bf16", seed=5, base=base,
                      extra={"model.extra_head.weight": ("F32", np.ones((4, 4), np.float32))})
    b, a = os.path.join(mdir, "base"), os.path.join(mdir, "a")
    r = runner.run_mergec(["inspect", b, a, os.path.join(mdir, "shape")], expect=1)
    runner.expect("model.layers.1.mlp.up_proj.weight" in r.stderr and "shape" in r.stderr, r.stderr)
    print("shape: " + r.stderr.strip().splitlines()[0])
    r = runner.run_mergec(["inspect", b, os.path.join(mdir, "missing")], expect=1)
    runner.expect("model.layers.0.self_attn.v_proj.weight" in r.stderr, r.stderr)
    print("missing: " + r.stderr.strip().splitlines()[0])
    r = runner.run_mergec(["inspect", b, a, os.path.join(mdir, "extra")], expect=1)
    runner.expect("model.extra_head.weight" in r.stderr and "'extra'" in r.stderr, r.stderr)
    print("extra: " + r.stderr.strip().splitlines()[0])
    r = runner.run_mergec(["inspect", b], expect=2)
    runner.expect("at least one fine-tune" in r.stderr, r.stderr)
    print("one model: " + r.stderr.strip().splitlines()[0])
    r = runner.run_mergec(["inspect", b, os.path.join(mdir, "nowhere")], expect=1)
    runner.expect("nowhere" in r.stderr, r.stderr)
    png = os.path.join(work, "x.png")
    r = runner.run_mergec(["inspect", b, os.path.join(mdir, "shape"), "--png", png], expect=1)
    runner.expect(not os.path.exists(png), "a failed inspect wrote its --png")
    r = runner.run_mergec(["inspect", b, a, "--png", os.path.join(b, "model.safetensors")], expect=1)
    runner.expect("model.safetensors" in r.stderr, r.stderr)
    print("--png over an input refused; nothing written on error")


if __name__ == "__main__":
    runner.main_cases({"statistics": case_statistics, "errors": case_errors})
