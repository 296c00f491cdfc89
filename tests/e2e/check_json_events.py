"""--json: stderr carries JSON Lines only, one object per event, each with "event" and "t".

  --case run     mergec run: warning (a pattern matching no tensor, with its position), plan,
                 progress (at most every 0.2 s, the last one complete), done; counts agree with
                 the model; an output path that needs escaping; stdout empty
  --case quiet   --quiet --json: no progress events, the others still come
  --case errors  a recipe error (file, line, column; no caret), a missing model (file), a usage
                 error; exit statuses unchanged
  --case exe     the same through a merge executable"""
import json
import os
import subprocess

import models
import runner
from runner import TestFailure, expect

RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    merge {
      "*.nothing.*" => base
      "*.mlp.*"     => linear([base, a], weights = [0.5, 0.5])
      _             => base
    }
    """
NUM_LAYERS = 2
TENSORS = 3 + 9 * NUM_LAYERS  # embed, norm, lm_head and 9 a layer
MLP = 3 * NUM_LAYERS


def make_models(work):
    base = models.make_llama(os.path.join(work, "models", "base"), "bf16", 1, num_layers=NUM_LAYERS)
    models.make_llama(os.path.join(work, "models", "a"), "bf16", 2, base=base, num_layers=NUM_LAYERS)
    models.make_llama(os.path.join(work, "models", "narrow"), "bf16", 3, num_layers=NUM_LAYERS,
                      hidden=32)
    return runner.write_recipe(os.path.join(work, "r.merge"), RECIPE)


def run(cmd, cwd, expect_rc, env=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=120,
                       env=dict(os.environ, **(env or {})))
    if p.returncode != expect_rc:
        raise TestFailure("%s: exit %d (expected %d)\n%s" % (" ".join(cmd), p.returncode, expect_rc,
                                                             p.stderr.decode("utf-8", "replace")))
    return p


def events(p):
    """Every stderr line as an object: each must parse, have "event" and a monotonic "t"."""
    out, last = [], 0.0
    text = p.stderr.decode("utf-8")  # the events are UTF-8
    expect(text == "" or text.endswith("\n"), "stderr does not end with a newline")
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            raise TestFailure("not a JSON line on stderr: %r" % line)
        expect(isinstance(e, dict) and list(e)[:2] == ["event", "t"],
               "event and t do not come first: %r" % line)
        expect(e["t"] >= last, "t went back: %r" % line)
        last = e["t"]
        out.append(e)
    return out


def of(evs, name):
    return [e for e in evs if e["event"] == name]


def check_success(evs, out, device="cpu", quiet=False, positions=True):
    names = [e["event"] for e in evs]
    expect(names[-1] == "done", "done is not the last event: %s" % names)
    expect(names.count("plan") == 1 and names.count("done") == 1, "one plan, one done: %s" % names)
    plan, done = of(evs, "plan")[0], of(evs, "done")[0]
    expect(all(n in ("warning", "info") for n in names[:names.index("plan")]),
           "before the plan: %s" % names)
    # The warning: the pattern that matches nothing (with its place in the recipe, for mergec).
    warnings = of(evs, "warning")
    expect(len(warnings) == 1 and '"*.nothing.*" matches no tensor' in warnings[0]["message"]
           and warnings[0]["level"] == "warning", "warnings: %s" % warnings)
    if positions:
        w = warnings[0]
        expect(w["file"].endswith("r.merge") and w["line"] == 4 and w["column"] == 3,
               "warning position: %s" % w)
    # The plan, against the models.
    expect(plan["tensors"] == TENSORS and plan["computed"] == MLP and
           plan["copied"] == TENSORS - MLP, "plan counts: %s" % plan)
    expect(plan["output"] == os.path.abspath(out), "plan output %r" % plan["output"])
    expect(plan["device"] == device and plan["shards"] == 1, "plan: %s" % plan)
    expect([m["name"] for m in plan["models"]] == ["base", "a"] and
           plan["models"][0]["path"].endswith("models/base"), "plan models: %s" % plan["models"])
    expect([r["tensors"] for r in plan["rules"]] == [0, MLP, TENSORS - MLP] and
           plan["rules"][0]["patterns"] == ["*.nothing.*"] and plan["rules"][2]["patterns"] == [],
           "plan rules: %s" % plan["rules"])
    expect(plan["input_bytes"] > 0 and plan["memory_estimate_bytes"] > 0, "plan: %s" % plan)
    sizes = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
                if f.endswith(".safetensors"))
    expect(0 < plan["output_bytes"] < sizes, "output_bytes %d, files %d" % (plan["output_bytes"], sizes))
    # Progress: between plan and done, counting up to every tensor.
    progress = of(evs, "progress")
    if quiet:
        expect(not progress, "--quiet: progress events")
    else:
        expect(progress, "no progress event")
        expect(names.index("plan") < names.index("progress"), "progress before the plan")
        last = progress[-1]
        expect(last["tensors_done"] == last["tensors"] == TENSORS, "last progress: %s" % last)
        expect(last["bytes_read"] == done["bytes_read"] and last["rate_bytes_per_s"] >= 0 and
               last["seconds"] >= 0, "last progress: %s" % last)
        done_counts = [p["tensors_done"] for p in progress]
        expect(done_counts == sorted(done_counts), "tensors_done not increasing")
        for a, b in zip(progress, progress[1:-1]):
            expect(b["t"] - a["t"] >= 0.19, "progress events %.3f s apart" % (b["t"] - a["t"]))
    expect(done["output"] == os.path.abspath(out) and done["tensors"] == TENSORS and
           done["bytes_written"] == plan["output_bytes"] and done["non_finite"] == [] and
           done["seconds"] >= 0 and done["bytes_read"] > 0, "done: %s" % done)
    return plan, done


def check_error(p, rc, want):
    evs = events(p)
    expect(p.returncode == rc, "exit %d" % p.returncode)
    errors = of(evs, "error")
    expect(len(errors) >= 1, "no error event: %s" % evs)
    e = errors[0]
    for k, v in want.items():
        if k == "message":
            expect(v in e["message"], "error message %r lacks %r" % (e["message"], v))
        else:
            expect(e.get(k) == v, "error %s: %r, expected %r (%s)" % (k, e.get(k), v, e))
    return e


def case_run(work):
    recipe = make_models(work)
    mergec = runner.mergec_path()
    # An output path that JSON must escape: a quote, a backslash, a tab, non-ASCII.
    out = os.path.join(work, 'out "q" \\ \t é')
    # 40 ms a tensor in the writer: about a second, so progress comes several times.
    p = run([mergec, "run", recipe, "-o", out, "--json"], work, 0,
            env={"MERGEC_TEST_DELAY_US": "40000"})
    expect(p.stdout == b"", "stdout: %r" % p.stdout)
    evs = events(p)
    check_success(evs, out)
    print("run: %d lines, all JSON: warning (r.merge:4:3), plan, %d progress, done" %
          (len(evs), len(of(evs, "progress"))))
    expect(len(of(evs, "progress")) >= 3, "expected several progress events")
    print("progress: at least 0.2 s apart, the last one complete; escaped output path")


def case_quiet(work):
    recipe = make_models(work)
    out = os.path.join(work, "out")
    p = run([runner.mergec_path(), "run", recipe, "-o", out, "--quiet", "--json"], work, 0)
    check_success(events(p), out, quiet=True)
    print("--quiet --json: warning, plan, done; no progress")


def check_errors(prefix, work, recipe, quiet_exe=None):
    """The input and usage errors of `prefix` (mergec run RECIPE, or an executable)."""
    # A missing model: the path it was given is the error's file.
    p = run(prefix + ["-o", "out1", "--json", "--model", "a=models/missing"], work, 1)
    e = check_error(p, 1, {"message": "no such file or directory", "file": "models/missing"})
    print("missing model: error event, file %s" % e["file"])
    expect(not os.path.exists(os.path.join(work, "out1")), "output left behind")
    # A shape mismatch: the (first) tensor is a field.
    p = run(prefix + ["-o", "out1", "--json", "--model", "a=models/narrow"], work, 1)
    e = check_error(p, 1, {"message": "shape mismatch"})
    expect(e.get("tensor") and e["message"].startswith("tensor '%s'" % e["tensor"]),
           "shape mismatch: %s" % e)
    print("shape mismatch: error event, tensor %s" % e["tensor"])
    # A usage error: an event, no usage text; exit 2.
    p = run(prefix + ["-o", "out2", "--json", "--threads", "zero"], work, 2)
    check_error(p, 2, {"message": "--threads: 'zero' is not a number"})
    print("usage error: error event, exit 2")


def case_errors(work):
    make_models(work)
    mergec = runner.mergec_path()
    bad = runner.write_recipe(os.path.join(work, "bad.merge"), """
        model base = "models/base"
        merge {
          _ => base +
        }
        """)
    p = run([mergec, "run", bad, "-o", "out", "--json"], work, 1)
    e = check_error(p, 1, {"file": bad, "line": 4})
    expect(isinstance(e["column"], int) and e["column"] > 0, "column: %s" % e)
    expect(len(events(p)) == len(p.stderr.splitlines()), "a caret or source line")
    print("recipe error: error event at %s:%d:%d" % (os.path.basename(e["file"]), e["line"], e["column"]))
    undefined = runner.write_recipe(os.path.join(work, "undefined.merge"), """
        model base = "models/base"
        merge { _ => base + nothing }
        """)
    p = run([mergec, "run", undefined, "-o", "out", "--json"], work, 1)
    e = check_error(p, 1, {"file": undefined, "line": 2})
    print("semantic error: error event at line %d, column %d" % (e["line"], e["column"]))
    check_errors([mergec, "run", os.path.join(work, "r.merge")], work, "r.merge")
    p = run([mergec, "run", "--json"], work, 2)
    check_error(p, 2, {"message": "no recipe given"})


def case_exe(work):
    recipe = make_models(work)
    mergec = runner.mergec_path()
    exe = os.path.join(work, "merge-r")
    runner.run_mergec(["compile", recipe, "--emit=exe", "-o", exe], cwd=work, echo=False)
    out = os.path.join(work, "out")
    p = run([exe, "-o", out, "--json"], work, 0)
    expect(p.stdout == b"", "stdout: %r" % p.stdout)
    evs = events(p)
    check_success(evs, out, positions=False)
    print("executable: %d lines, all JSON: warning, plan, progress, done" % len(evs))
    out2 = os.path.join(work, "out-quiet")
    check_success(events(run([exe, "-o", out2, "--json", "--quiet"], work, 0)), out2,
                  quiet=True, positions=False)
    print("executable --quiet --json: no progress")
    check_errors([exe], work, recipe)


if __name__ == "__main__":
    runner.main_cases({"run": case_run, "quiet": case_quiet, "errors": case_errors, "exe": case_exe})
