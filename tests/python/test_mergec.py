"""`import mergec` (python/mergec): run, compile and inspect against numpy, the errors, progress,
Ctrl-C and the GIL."""
import os
import signal
import threading
import time

import numpy as np
import pytest

import mergec
import compare
import inspect_ref
import st

RECIPE = """\
model base = "{base}"
model a = "{a}"
model b = "{b}"
param lam = 0.8
merge base + lam * (tv(a) + tv(b)) / 2
"""


def expected_task_arithmetic(values, lam):
    f = np.float32
    return {n: (values["base"][n] + f(lam) * ((values["a"][n] - values["base"][n]) +
                                               (values["b"][n] - values["base"][n])) / f(2)).astype(f)
            for n in values["base"]}


def test_run_text_matches_numpy(checkpoints, tmp_path):
    out = tmp_path / "merged"
    result = mergec.run(RECIPE.format(**checkpoints), out, params={"lam": 0.5}, dtype="f32",
                        threads=2)
    assert result.output == str(out)
    assert result.tensors == len(checkpoints["values"]["base"])
    assert result.bytes_read > 0 and result.bytes_written > 0 and result.seconds >= 0
    got = st.read_model(str(out))
    assert all(d == "F32" for d, _ in got.values())
    compare.assert_model(got, expected_task_arithmetic(checkpoints["values"], 0.5), max_ulp=1)


def test_run_path_with_models_override(checkpoints, tmp_path):
    recipe = tmp_path / "r.merge"
    recipe.write_text(RECIPE.format(base="nowhere", a="nowhere", b="nowhere"))
    out = tmp_path / "merged"
    mergec.run(str(recipe), str(out), models={k: checkpoints[k] for k in ("base", "a", "b")})
    got = st.read_model(str(out))
    assert all(d == "BF16" for d, _ in got.values())  # the base's dtype
    compare.assert_model(got, expected_task_arithmetic(checkpoints["values"], 0.8), max_ulp=1)
    # A pathlib.Path is a path too.
    mergec.run(recipe, tmp_path / "again", models={k: checkpoints[k] for k in ("base", "a", "b")})


def test_compile(checkpoints):
    fused = mergec.compile(RECIPE.format(**checkpoints))
    assert "merge.kernel" in fused and "func.func @rule_0" in fused
    ast = mergec.compile(RECIPE.format(**checkpoints), emit="ast")
    assert "lam" in ast
    llvm = mergec.compile(RECIPE.format(**checkpoints), emit="llvm", dtype="bf16")
    assert "define" in llvm
    with pytest.raises(ValueError, match="obj and exe are files"):
        mergec.compile(RECIPE.format(**checkpoints), emit="exe")
    with pytest.raises(ValueError, match="emit must be one of ast, merge, fused, loops, llvm-dialect, llvm, asm, gpu, nvvm, nvvm-llvm, ptx"):
        mergec.compile(RECIPE.format(**checkpoints), emit="mlir")


def test_recipe_error_has_position(checkpoints, tmp_path):
    text = RECIPE.format(**checkpoints).replace("(tv(a) + tv(b)) / 2", "(tv(a) + tv(c)) / 2")
    out = tmp_path / "merged"
    with pytest.raises(mergec.RecipeError) as info:
        mergec.run(text, out)
    e = info.value
    assert (e.path, e.line) == ("<recipe>", 5)
    assert e.column == text.splitlines()[4].index("c)") + 1
    assert "c" in e.message and e.diagnostics[0].severity == "error"
    assert "<recipe>:5:%d: error:" % e.column in str(e)
    assert not out.exists()
    # Every diagnostic, not only the first.
    bad = tmp_path / "bad.merge"
    bad.write_text('model base = "x"\nparam p = 1\nmerge base + p * q\n')
    with pytest.raises(mergec.RecipeError) as info:
        mergec.compile(str(bad))
    assert info.value.path == str(bad) and info.value.line == 3
    assert all(isinstance(d, mergec.Diagnostic) for d in info.value.diagnostics)


def test_input_errors_leave_no_output(checkpoints, tmp_path):
    out = tmp_path / "merged"
    with pytest.raises(mergec.InputError) as info:
        mergec.run(RECIPE.format(**checkpoints), out, models={"b": str(tmp_path / "missing")})
    assert "missing" in info.value.message
    assert not out.exists()
    with pytest.raises(mergec.InputError):
        mergec.run(str(tmp_path / "no-such.merge"), out)
    # An existing output needs force.
    mergec.run(RECIPE.format(**checkpoints), out)
    with pytest.raises(mergec.InputError) as info:
        mergec.run(RECIPE.format(**checkpoints), out)
    assert "--force" in info.value.message or "force" in info.value.message
    mergec.run(RECIPE.format(**checkpoints), out, force=True)


def test_progress_callback(checkpoints, tmp_path):
    calls = []
    main = threading.get_ident()

    def progress(done, total, nbytes):
        calls.append((done, total, nbytes, threading.get_ident()))
    result = mergec.run(RECIPE.format(**checkpoints), tmp_path / "m", progress=progress)
    assert [c[0] for c in calls] == list(range(1, result.tensors + 1))
    assert all(c[1] == result.tensors for c in calls)
    assert calls[-1][2] == result.bytes_read
    assert all(c[3] == main for c in calls)  # called on the caller's thread


def test_exception_in_callback_stops_cleanly(checkpoints, tmp_path):
    out = tmp_path / "m"

    def progress(done, total, nbytes):
        if done == 3:
            raise ValueError("stop here")
    with pytest.raises(ValueError, match="stop here"):
        mergec.run(RECIPE.format(**checkpoints), out, progress=progress)
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if "mergec" in p]  # no temporary left


def test_ctrl_c_interrupts_cleanly(checkpoints, tmp_path):
    out = tmp_path / "m"

    def progress(done, total, nbytes):
        if done == 2:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
    # Python's own handler, whatever this process inherited: a shell without job control starts
    # background commands with SIGINT ignored, and Python then installs no handler at all.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            mergec.run(RECIPE.format(**checkpoints), out, progress=progress)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if "mergec" in p]


def test_gil_released_while_merging(checkpoints, tmp_path):
    ticks = []
    done = threading.Event()

    def work():
        mergec.run(RECIPE.format(**checkpoints), tmp_path / "m", threads=1)
        done.set()
    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        ticks.append(time.monotonic())
        time.sleep(0.001)
    t.join()
    assert len(ticks) > 3


def test_recipe_or_path():
    assert mergec._recipe("merge base + tv(a)") == ("<recipe>", "merge base + tv(a)")
    assert mergec._recipe("a.merge") == ("a.merge", None)
    assert mergec._recipe("x\nmerge base")[1] == "x\nmerge base"
    assert mergec._recipe(__file__) == (__file__, None)


def test_stdlib_is_packaged(checkpoints, tmp_path, monkeypatch):
    monkeypatch.delenv("MERGEC_STDLIB", raising=False)
    stdlib = os.path.join(os.path.dirname(mergec.__file__), "stdlib")
    assert os.path.isfile(os.path.join(stdlib, "linear.merge"))
    text = RECIPE.format(**checkpoints).replace("base + lam * (tv(a) + tv(b)) / 2",
                                                 "linear([a, b], [0.25, 0.75])")
    mergec.run(text, tmp_path / "m", dtype="f32")
    got = st.read_model(str(tmp_path / "m"))
    v = checkpoints["values"]
    name = "model.layers.0.mlp.up_proj.weight"
    want = (np.float32(0.25) * v["a"][name] + np.float32(0.75) * v["b"][name])
    assert np.allclose(got[name][1], want, rtol=1e-6, atol=1e-7)


def test_inspect_matches_numpy(checkpoints, tmp_path):
    png = tmp_path / "sim.png"
    report = mergec.inspect(checkpoints["base"], {"math": checkpoints["a"], "code": checkpoints["b"]},
                            png=png)
    assert [m["name"] for m in report["models"]] == ["math", "code"]
    v = checkpoints["values"]
    worst, rows = inspect_ref.check_report(report, v["base"], [v["a"], v["b"]])
    assert rows == len(v["base"]) + len(report["kinds"])
    assert inspect_ref.check_png(png.read_bytes(), report) > 0
    named = mergec.inspect(checkpoints["base"], [checkpoints["a"], checkpoints["b"]], density=0.5)
    assert [m["name"] for m in named["models"]] == ["a", "b"] and named["density"] == 0.5
    with pytest.raises(ValueError):
        mergec.inspect(checkpoints["base"], [])
    with pytest.raises(mergec.InputError):
        mergec.inspect(checkpoints["base"], [str(tmp_path / "missing")])


def test_linear_algebra_links_from_the_module(checkpoints, tmp_path):
    """A kernel with a matrix phase calls the runtime's mergec_la_* by symbol: the module must
    make them visible to the JIT as the mergec executable does."""
    text = ('model base = "{base}"\nmodel a = "{a}"\nmerge {{\n'
            '  "*.mlp.up_proj.weight" => base + lowrank(tv(a), 4)\n  _ => base\n}}\n').format(**checkpoints)
    mergec.run(text, tmp_path / "m", dtype="f32")
    got = st.read_model(str(tmp_path / "m"))
    v = checkpoints["values"]
    name = "model.layers.1.mlp.up_proj.weight"
    t = (v["a"][name] - v["base"][name]).astype(np.float64)
    u, s, vt = np.linalg.svd(t, full_matrices=False)
    want = v["base"][name] + (u[:, :4] * s[:4]) @ vt[:4]
    err = np.linalg.norm(got[name][1] - want) / np.linalg.norm(want - v["base"][name])
    assert err < 1e-4, err
