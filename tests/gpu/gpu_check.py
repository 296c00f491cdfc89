#!/usr/bin/env python3
"""The GPU check's driver (run.sh calls it): runs every step against a bundle made by
scripts/gpu-check.sh and writes OUT/report.md, OUT/report.json, OUT/log.txt, OUT/compare.json
and OUT/torch_bench.json. Each step is guarded (a failure is reported, the rest still runs)
and has its own timeout; the whole run keeps within --budget seconds (the report is rewritten
after every step, so a run killed from outside still leaves one).

Steps: env (GPU, CPU, glibc, each executable starts) -> gtest (mergec-cuda-tests) ->
correctness (small models: every executable --device cpu, --threads 1, --device cuda twice,
--dtype f32 on both) -> kernel benchmark (layer7b models, the bench-* executables with
--device cuda --verbose, and --device cpu) -> torch_bench.py -> end to end (1b models,
--device cuda vs cpu wall times).
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402

MODELS = ("base", "a", "b", "c")
LOG_LIMIT = 3 << 20


class Ctx:
    def __init__(self, args):
        self.args = args
        self.bundle = os.path.abspath(args.bundle)
        self.out = os.path.abspath(args.out)
        self.t0 = time.time()
        self.devices = [d for d in args.devices.split(",") if d]
        self.steps = []          # [{name, status, seconds, note}]
        self.results = {}        # step name -> structured result
        self.compare_details = {}
        self.log_size = 0
        self.exes = []           # [{name, path, kind, device_flag}]
        self.work = None
        self.ncpu = os.cpu_count() or 1
        self.cuda_hangs = 0

    def remaining(self):
        return self.args.budget - (time.time() - self.t0)

    def log(self, text):
        if self.log_size > LOG_LIMIT:
            return
        text = text if text.endswith("\n") else text + "\n"
        self.log_size += len(text)
        with open(os.path.join(self.out, "log.txt"), "a") as f:
            f.write(text)
            if self.log_size > LOG_LIMIT:
                f.write("[log.txt: limit reached, later output left out]\n")


def tail(text, lines=25, chars=4000):
    t = "\n".join((text or "").rstrip().splitlines()[-lines:])
    return t[-chars:]


SIGNAL_HINTS = {
    signal.SIGILL: "illegal instruction: this CPU lacks a feature the kernels were compiled for "
                   "(see env: cpu flags missing)",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error (out of space on a memory-mapped output?)",
    signal.SIGABRT: "abort",
    signal.SIGKILL: "killed (timeout or out of memory)",
}


def run(ctx, cmd, timeout, env=None, label=None, quiet_ok=False):
    """Runs cmd (a list) with a timeout (its process group is killed at the end). Returns a
    dict: rc, wall, timed_out, out, err, hint; logs the command and the tail of its output.
    After two cuda runs timed out, later cuda runs get at most 15 s (a hanging device must not
    eat the budget)."""
    is_cuda = "cuda" in cmd and "--device" in cmd
    if is_cuda and ctx.cuda_hangs >= 2:
        timeout = min(timeout, 15)
    timeout = max(1.0, min(timeout, ctx.remaining() - 5))
    t = time.time()
    res = {"cmd": " ".join(cmd), "rc": None, "timed_out": False, "out": "", "err": "", "hint": ""}
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             errors="replace", env=env, start_new_session=True)
    except OSError as e:
        res.update(rc=127, err=str(e), wall=0.0, hint="cannot start: %s" % e)
        ctx.log("$ %s\n  cannot start: %s" % (res["cmd"], e))
        return res
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = p.communicate()
        res["timed_out"] = True
    res["wall"] = round(time.time() - t, 3)
    res.update(rc=p.returncode, out=out or "", err=err or "")
    if res["timed_out"]:
        res["hint"] = "timed out after %.0f s" % timeout
        if is_cuda:
            ctx.cuda_hangs += 1
    elif p.returncode is not None and p.returncode < 0:
        sig = -p.returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "?"
        res["hint"] = "killed by signal %d (%s): %s" % (sig, name, SIGNAL_HINTS.get(sig, ""))
    elif "GLIBC_" in res["err"] and "not found" in res["err"]:
        res["hint"] = "this machine's glibc is older than the executable needs (see env)"
    elif p.returncode:
        res["hint"] = "exit %d: %s" % (p.returncode, tail(res["err"], 1, 240))
    if not (quiet_ok and p.returncode == 0 and not res["timed_out"]):
        ctx.log("$ %s\n  [%s] rc=%s wall=%.2fs%s\n%s" % (
            res["cmd"], label or "", res["rc"], res["wall"], (" " + res["hint"]) if res["hint"] else "",
            "\n".join("  | " + l for l in tail(res["out"] + "\n" + res["err"]).splitlines() if l.strip())))
    else:
        ctx.log("$ %s\n  [%s] rc=0 wall=%.2fs" % (res["cmd"], label or "", res["wall"]))
    return res


def ok(r):
    return r is not None and r["rc"] == 0 and not r["timed_out"]


def step(ctx, name, fn, min_time=10):
    """Runs one step, guarded; records its status."""
    rec = {"name": name, "status": "?", "seconds": 0.0, "note": ""}
    ctx.steps.append(rec)
    t = time.time()
    if ctx.remaining() < min_time:
        rec.update(status="skipped", note="out of time (%.0f s left of the budget)" % ctx.remaining())
    else:
        ctx.log("\n===== %s (%.0f s into the run, %.0f s left) =====" % (name, time.time() - ctx.t0,
                                                                     ctx.remaining()))
        try:
            status, note = fn(ctx)
            rec.update(status=status, note=note)
        except Exception as e:  # noqa: BLE001 - a step's failure is a result
            import traceback
            rec.update(status="error", note="%s: %s" % (type(e).__name__, e))
            ctx.log(traceback.format_exc())
    rec["seconds"] = round(time.time() - t, 1)
    write_report(ctx)


# --- models --------------------------------------------------------------------------------
def make_models(ctx, size, timeout, extra=(), subdir=None):
    d = os.path.join(ctx.work, subdir or size)
    cmd = [sys.executable, os.path.join(HERE, "make_models.py"), "--size", size, "--out", d,
           "--jobs", str(ctx.ncpu)] + list(extra)
    r = run(ctx, cmd, timeout, label="generate " + size)
    if not ok(r):
        raise RuntimeError("make_models --size %s failed: %s" % (size, r["hint"]))
    ctx.results.setdefault("generate", {})[subdir or size] = {"seconds": r["wall"], "line": tail(r["out"], 1)}
    return d


def model_args(models_dir):
    out = []
    for m in MODELS:
        out += ["--model", "%s=%s" % (m, os.path.join(models_dir, m))]
    return out


def exe_cmd(exe, models_dir, out_dir, device, extra=()):
    """--verbose in extra drops --quiet (so that nothing can hide the `cuda:` line)."""
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    quiet = [] if "--verbose" in extra else ["--quiet"]
    cmd = [exe["path"], "-o", out_dir, "--force"] + quiet + model_args(models_dir)
    if exe["device_flag"]:
        cmd += ["--device", device]
    return cmd + list(extra)


def cuda_wanted(ctx, exe=None):
    """None when cuda runs should happen, else why not."""
    if "cuda" not in ctx.devices:
        return "skipped (--devices %s)" % ",".join(ctx.devices)
    if exe is not None and not exe["device_flag"]:
        return "skipped: %s has no --device option (built without the CUDA backend)" % exe["name"]
    return None


MERGED_LINE = re.compile(r"merged \d+ tensors?: .*? in ([\d.]+) s")


def parse_merged(text):
    """The merge's own time from `merged N tensors: ... in X s` (without process start-up)."""
    m = MERGED_LINE.findall(text or "")
    return float(m[-1]) if m else None


def parse_cuda_line(text):
    """The `cuda: GPU: kernels X ms over N tensors, host->device A GB/s, device->host B GB/s,
    peak device memory M MiB` line of --verbose (fields optional)."""
    lines = [l[l.index("cuda: "):].strip() for l in (text or "").replace("\r", "\n").splitlines()
             if "cuda: " in l and "kernels" in l]
    if not lines:
        return None
    line = lines[-1]
    res = {"line": line}
    for key, pat in (("gpu", r"^cuda: ([^:]+):"), ("kernel_ms", r"kernels ([\d.]+) ms"),
                     ("tensors", r"over (\d+) tensors?"), ("h2d_GBps", r"host->device ([\d.]+) GB/s"),
                     ("d2h_GBps", r"device->host ([\d.]+) GB/s"),
                     ("peak_MiB", r"peak device memory ([\d.]+) MiB")):
        mm = re.search(pat, line)
        if mm:
            v = mm.group(1)
            res[key] = v.strip() if key == "gpu" else (int(v) if key == "tensors" else float(v))
    return res


def do_compare(ctx, a, b, label, detail_key=None):
    try:
        res = compare.compare_dirs(a, b)
        s = compare.summarize(res, label)
    except Exception as e:  # noqa: BLE001
        ctx.log("compare %s: %s" % (label, e))
        return {"label": label, "identical": False, "errors": ["compare failed: %s" % e]}
    ctx.log(compare.human(s))
    if detail_key and not s["identical"]:
        ctx.compare_details[detail_key] = {k: v for k, v in res["tensors"].items() if not v["identical"]}
    return s


def verdict(s):
    if s is None:
        return "-"
    if s.get("errors"):
        return "NOT COMPARABLE (%s)" % "; ".join(s["errors"])[:120]
    if s["identical"]:
        return "identical"
    return "%d/%d el. differ, max %s ulp" % (s["differing_elements"], s["elements"], s["max_ulp"])


def rm(path):
    shutil.rmtree(path, ignore_errors=True)


# --- steps ---------------------------------------------------------------------------------
def step_env(ctx):
    env = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
           "cpus": ctx.ncpu, "python": platform.python_version(), "bundle": ctx.bundle,
           "devices": ctx.devices, "budget_s": ctx.args.budget}
    try:
        import numpy
        env["numpy"] = numpy.__version__
    except ImportError:
        env["numpy"] = None
    try:
        with open("/proc/meminfo") as f:
            env["mem_GiB"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    r = run(ctx, ["nvidia-smi", "-L"], 20, label="nvidia-smi")
    env["nvidia_smi_L"] = r["out"].strip() if ok(r) else "unavailable: " + (r["hint"] or r["err"][:200])
    r = run(ctx, ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.memory,pcie.link.gen.max,"
                  "pcie.link.width.max", "--format=csv,noheader"], 20, label="nvidia-smi query")
    if ok(r):
        env["gpu_query"] = r["out"].strip()
    r = run(ctx, ["ldd", "--version"], 10, label="glibc")
    env["glibc"] = (r["out"].splitlines() or ["?"])[0] if r["out"] else "?"
    # CPU model and the features the kernels were compiled with
    flags, model = set(), "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    env["cpu"] = model
    info = {}
    try:
        with open(os.path.join(ctx.bundle, "build-info.json")) as f:
            info = json.load(f)
    except (OSError, ValueError):
        pass
    env["build"] = {k: v for k, v in info.items() if k != "cpu_flags"}
    if info.get("cpu_flags") and flags:
        interesting = re.compile(r"^(avx|sse|fma|f16c|bmi|amx|popcnt|movbe|lzcnt|abm|adx|vaes|vpclmul|gfni)")
        missing = sorted(f for f in info["cpu_flags"] if f not in flags and interesting.match(f))
        env["cpu_flags_missing"] = missing
    # workdir: /dev/shm when it has room for the 1b step, else the temp directory
    need = ctx.args.need_gb * 1e9
    # never inside OUT: what is there comes back from the GPU machine
    cands = ([ctx.args.workdir] if ctx.args.workdir else []) + ["/dev/shm", os.environ.get("TMPDIR", "/tmp"),
                                                               os.getcwd()]
    for c in cands:
        try:
            if c and os.path.isdir(c) and os.access(c, os.W_OK) and shutil.disk_usage(c).free >= need:
                break
        except OSError:
            continue
    else:
        c = max((x for x in cands if x and os.path.isdir(x)), key=lambda x: shutil.disk_usage(x).free)
    ctx.work = os.path.join(c, "mergec-gpu-check-%d" % os.getpid())
    os.makedirs(ctx.work, exist_ok=True)
    env["workdir"] = ctx.work
    env["workdir_free_GB"] = round(shutil.disk_usage(ctx.work).free / 1e9, 1)
    # the executables: each must start; does it take --device?
    try:
        with open(os.path.join(ctx.bundle, "exes.json")) as f:
            listed = json.load(f)
    except (OSError, ValueError):
        listed = [{"name": n, "kind": "bench" if n.startswith("bench-") else "check"}
                  for n in sorted(os.listdir(ctx.bundle))
                  if os.access(os.path.join(ctx.bundle, n), os.X_OK) and
                  os.path.isfile(os.path.join(ctx.bundle, n)) and not n.endswith((".sh", ".py")) and
                  n != "mergec-cuda-tests"]
    bad = []
    for e in listed:
        path = os.path.join(ctx.bundle, e["name"])
        r = run(ctx, [path, "--help"], 20, label="help " + e["name"], quiet_ok=True)
        exe = dict(e, path=path, device_flag="--device" in r["out"] + r["err"], starts=ok(r))
        if not ok(r):
            bad.append("%s: %s" % (e["name"], r["hint"]))
        ctx.exes.append(exe)
    env["exes"] = [{k: e[k] for k in ("name", "kind", "device_flag", "starts")} for e in ctx.exes]
    ctx.results["env"] = env
    note = "%s; %d executables%s" % (env["nvidia_smi_L"].splitlines()[0] if env["nvidia_smi_L"] else "?",
                                     len(ctx.exes), (", NOT STARTING: " + "; ".join(bad)) if bad else "")
    if env.get("cpu_flags_missing"):
        note += "; CPU lacks compile-time flags: " + " ".join(env["cpu_flags_missing"])
    return ("fail" if bad or not ctx.exes else "ok"), note


def step_gtest(ctx):
    path = os.path.join(ctx.bundle, "mergec-cuda-tests")
    why = cuda_wanted(ctx)
    if why:
        return "skipped", why
    if not os.path.isfile(path):
        return "skipped", "no mergec-cuda-tests in the bundle"
    r = run(ctx, [path, "--gtest_brief=1"], ctx.args.gtest_timeout, label="gtest")
    text = r["out"] + r["err"]
    passed = re.search(r"\[  PASSED  \] (\d+) test", text)
    failed = re.search(r"\[  FAILED  \] (\d+) test", text)
    skipped = re.search(r"\[  SKIPPED \] (\d+) test", text)
    failing = re.findall(r"^\[  FAILED  \] (\S+)", text, re.M)
    res = {"rc": r["rc"], "wall": r["wall"], "passed": int(passed.group(1)) if passed else None,
           "failed": int(failed.group(1)) if failed else 0, "failing": sorted(set(failing))[:30],
           "skipped": int(skipped.group(1)) if skipped else 0,
           "hint": r["hint"], "tail": tail(text, 15)}
    ctx.results["gtest"] = res
    note = "%s passed, %s failed, %s skipped%s" % (res["passed"], res["failed"], res["skipped"],
                                                   (" (" + r["hint"] + ")") if r["hint"] else "")
    if ok(r) and not res["passed"] and res["skipped"]:
        return "warn", note + ": every test skipped (no CUDA driver or device?)"
    return ("ok" if ok(r) else "fail"), note


def step_correctness(ctx):
    models = make_models(ctx, "small", 120)
    models32 = None
    if not ctx.args.no_f32 and not cuda_wanted(ctx):
        models32 = make_models(ctx, "small", 120, ["--dtype", "f32"], subdir="small-f32")
    outs = os.path.join(ctx.work, "out-small")
    rows, failures = [], []
    for exe in ctx.exes:
        if not exe["starts"]:
            rows.append({"exe": exe["name"], "error": "does not start"})
            failures.append(exe["name"] + ": does not start")
            continue
        if ctx.remaining() < 30:
            rows.append({"exe": exe["name"], "error": "out of time"})
            continue
        row = {"exe": exe["name"]}
        o = lambda tag: os.path.join(outs, "%s-%s" % (exe["name"], tag))  # noqa: E731
        t = ctx.args.run_timeout
        cpu = run(ctx, exe_cmd(exe, models, o("cpu"), "cpu"), t, label=exe["name"] + " cpu")
        row["cpu_s"] = cpu["wall"]
        if not ok(cpu):
            row["error"] = "cpu run: " + cpu["hint"]
            failures.append("%s: cpu run failed (%s)" % (exe["name"], cpu["hint"]))
            rows.append(row)
            continue
        t1 = run(ctx, exe_cmd(exe, models, o("cpu-t1"), "cpu", ["--threads", "1"]), t,
                 label=exe["name"] + " cpu threads 1")
        row["threads1_vs_cpu"] = do_compare(ctx, o("cpu"), o("cpu-t1"), exe["name"] + " cpu --threads 1 vs cpu") \
            if ok(t1) else {"identical": False, "errors": ["--threads 1 run: " + t1["hint"]]}
        if not row["threads1_vs_cpu"]["identical"]:
            failures.append("%s: --threads 1 differs from the default" % exe["name"])
        why = cuda_wanted(ctx, exe)
        if why:
            row["cuda"] = why
        else:
            c1 = run(ctx, exe_cmd(exe, models, o("cuda1"), "cuda", ["--verbose"]), t, label=exe["name"] + " cuda 1")
            row["cuda_s"] = c1["wall"]
            row["cuda_line"] = parse_cuda_line(c1["err"] + c1["out"])
            if not ok(c1):
                row["error"] = "cuda run: " + c1["hint"]
                failures.append("%s: cuda run failed (%s)" % (exe["name"], c1["hint"]))
            else:
                c2 = run(ctx, exe_cmd(exe, models, o("cuda2"), "cuda"), t, label=exe["name"] + " cuda 2")
                row["cuda_vs_cpu"] = do_compare(ctx, o("cpu"), o("cuda1"), exe["name"] + " cuda vs cpu",
                                                detail_key=exe["name"] + " small bf16 cuda vs cpu")
                row["cuda_run2_vs_run1"] = do_compare(ctx, o("cuda1"), o("cuda2"), exe["name"] + " cuda run 2 vs 1") \
                    if ok(c2) else {"identical": False, "errors": ["second cuda run: " + c2["hint"]]}
                if not row["cuda_run2_vs_run1"]["identical"]:
                    failures.append("%s: two cuda runs differ" % exe["name"])
                if exe["kind"] != "bench" and models32:
                    # f32 models: the F32 kernels (an executable compiled without the models at hand
                    # has uniform signatures only, so --dtype f32 on bf16 inputs is not compiled)
                    f1 = run(ctx, exe_cmd(exe, models32, o("cpu-f32"), "cpu"), t, label=exe["name"] + " cpu f32")
                    f2 = run(ctx, exe_cmd(exe, models32, o("cuda-f32"), "cuda"), t, label=exe["name"] + " cuda f32")
                    if ok(f1) and ok(f2):
                        row["f32_cuda_vs_cpu"] = do_compare(ctx, o("cpu-f32"), o("cuda-f32"),
                                                            exe["name"] + " f32 cuda vs cpu",
                                                            detail_key=exe["name"] + " small f32 cuda vs cpu")
                    else:
                        row["f32_cuda_vs_cpu"] = {"identical": False,
                                                  "errors": ["f32 runs: %s / %s" % (f1["hint"], f2["hint"])]}
        rows.append(row)
        for tag in ("cpu-t1", "cuda2", "cpu-f32", "cuda-f32"):
            rm(o(tag))
    ctx.results["correctness"] = {"rows": rows, "failures": failures}
    n_cuda = sum(1 for r in rows if "cuda_vs_cpu" in r)
    n_ident = sum(1 for r in rows if r.get("cuda_vs_cpu", {}).get("identical"))
    note = "%d executables; cuda compared for %d (%d byte-identical to cpu)%s" % (
        len(rows), n_cuda, n_ident, ("; FAILURES: " + "; ".join(failures)) if failures else "")
    rm(outs)
    return ("fail" if failures else "ok"), note


def traffic_per_tensor(rows, cols, inputs=4, itemsize=2):
    return (inputs + 1) * rows * cols * itemsize


def step_kernel_bench(ctx):
    benches = [e for e in ctx.exes if e["kind"] == "bench" and e["starts"]]
    if not benches:
        return "skipped", "no bench-* executables"
    models = make_models(ctx, "layer7b", 180, ["--tensors", str(ctx.args.bench_tensors)])
    outs = os.path.join(ctx.work, "out-l7b")
    per_tensor = traffic_per_tensor(4096, 14336)
    rows = []
    for exe in benches:
        if ctx.remaining() < 40:
            rows.append({"exe": exe["name"], "error": "out of time"})
            continue
        row = {"exe": exe["name"], "tensors": ctx.args.bench_tensors, "bytes_per_tensor": per_tensor}
        o = lambda tag: os.path.join(outs, "%s-%s" % (exe["name"], tag))  # noqa: E731
        why = cuda_wanted(ctx, exe)
        if why:
            row["cuda"] = why
        else:
            lines = []
            for i in range(ctx.args.bench_reps):
                r = run(ctx, exe_cmd(exe, models, o("cuda"), "cuda", ["--verbose"]), ctx.args.bench_timeout,
                        label="%s cuda bench %d" % (exe["name"], i + 1))
                if not ok(r):
                    row["error"] = "cuda run: " + r["hint"]
                    break
                row.setdefault("cuda_wall_s", []).append(r["wall"])
                line = parse_cuda_line(r["err"] + r["out"])
                if line:
                    lines.append(line)
                else:
                    row["problem"] = "no `cuda: ... kernels X ms` line in the --verbose output"
            row["cuda_lines"] = lines
            kms = [l["kernel_ms"] for l in lines if "kernel_ms" in l]
            if kms:
                best = min(kms)
                n = next((l.get("tensors") for l in lines if l.get("tensors")), ctx.args.bench_tensors)
                row["kernel_ms"] = best
                row["kernel_ms_per_tensor"] = round(best / n, 3)
                row["kernel_GBps"] = round(per_tensor / (best / n) / 1e6, 1)
        r = run(ctx, exe_cmd(exe, models, o("cpu"), "cpu"), ctx.args.bench_timeout, label=exe["name"] + " cpu bench")
        row["cpu_wall_s"] = r["wall"] if ok(r) else None
        if not ok(r):
            row["cpu_error"] = r["hint"]
        if ok(r) and os.path.isdir(o("cuda")) and "error" not in row:
            row["cuda_vs_cpu"] = do_compare(ctx, o("cpu"), o("cuda"), exe["name"] + " layer7b cuda vs cpu",
                                            detail_key=exe["name"] + " layer7b cuda vs cpu")
        rows.append(row)
        rm(o("cpu"))
        rm(o("cuda"))
    rm(models)  # room for the 1b models
    ctx.results["kernel_bench"] = {"rows": rows, "shape": [4096, 14336], "inputs": 4}
    errors = [r["exe"] + ": " + (r.get("error") or r.get("problem")) for r in rows
              if r.get("error") or r.get("problem")]
    got = [r for r in rows if "kernel_ms" in r]
    note = ", ".join("%s %.2f ms/tensor" % (r["exe"], r["kernel_ms_per_tensor"]) for r in got) or \
        "no kernel times%s" % ((" (%s)" % rows[0]["cuda"]) if rows and rows[0].get("cuda") else "")
    if errors:
        note += "; ERRORS: " + "; ".join(errors)
    return ("fail" if errors else ("ok" if got else "skipped")), note


def step_torch(ctx):
    if "cuda" not in ctx.devices and not ctx.args.torch_cpu:
        return "skipped", "skipped (--devices %s)" % ",".join(ctx.devices)
    path = os.path.join(ctx.out, "torch_bench.json")
    cmd = [sys.executable, os.path.join(HERE, "torch_bench.py"), "--json", path]
    if "cuda" not in ctx.devices:
        cmd += ["--device", "cpu", "--rows", "512", "--cols", "1024", "--copy-mib", "64", "--reps", "3"]
    r = run(ctx, cmd, ctx.args.torch_timeout, label="torch_bench")
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, ValueError):
        res = {"error": r["hint"] or "no JSON", "tail": tail(r["out"] + r["err"], 10)}
    ctx.results["torch"] = res
    if res.get("skipped"):
        return "skipped", res["skipped"]
    if "error" in res:
        return "fail", res["error"]
    bw = res.get("bandwidth", {})
    m = res.get("methods", {})
    note = "d2d copy %s GB/s (r+w %s), H2D pinned %s GB/s; %s" % (
        bw.get("d2d_copy_GBps"), bw.get("d2d_copy_rw_GBps"), bw.get("h2d_pinned_GBps"),
        ", ".join("%s %s ms" % (k, v.get("ms", "err")) for k, v in m.items()))
    errs = [k for k, v in m.items() if "error" in v]
    return ("fail" if errs or not ok(r) else "ok"), note + ("; errors in " + ",".join(errs) if errs else "")


def step_e2e(ctx):
    names = [n for n in ctx.args.e2e_exes.split(",") if n]
    exes = [e for e in ctx.exes if e["name"] in names and e["starts"]]
    if not exes:
        return "skipped", "none of %s in the bundle" % names
    extra = ["--layers", str(ctx.args.e2e_layers)]
    models = make_models(ctx, ctx.args.e2e_size, 240, extra)
    size = sum(os.path.getsize(os.path.join(models, m, "model.safetensors")) for m in MODELS)
    outs = os.path.join(ctx.work, "out-e2e")
    rows = []
    for exe in exes:
        o = lambda tag: os.path.join(outs, "%s-%s" % (exe["name"], tag))  # noqa: E731
        for device in ("cuda", "cpu"):
            if ctx.remaining() < 30:
                rows.append({"exe": exe["name"], "device": device, "error": "out of time"})
                continue
            row = {"exe": exe["name"], "device": device, "input_GB": round(size / 1e9, 2)}
            why = cuda_wanted(ctx, exe) if device == "cuda" else None
            if why:
                row["skipped"] = why
                rows.append(row)
                continue
            r = run(ctx, exe_cmd(exe, models, o(device), device, ["--verbose"]), ctx.args.e2e_timeout,
                    label="%s e2e %s" % (exe["name"], device))
            if ok(r):
                row["wall_s"] = r["wall"]
                row["merged_s"] = parse_merged(r["err"] + r["out"])
                row["input_GBps"] = round(size / 1e9 / r["wall"], 2)
                if device == "cuda":
                    row["cuda_line"] = parse_cuda_line(r["err"] + r["out"])
            else:
                row["error"] = r["hint"]
            rows.append(row)
        if os.path.isdir(o("cuda")) and os.path.isdir(o("cpu")) and ctx.remaining() > 60:
            rows[-1]["cuda_vs_cpu"] = do_compare(ctx, o("cpu"), o("cuda"), exe["name"] + " 1b cuda vs cpu",
                                                 detail_key=exe["name"] + " 1b cuda vs cpu")
        rm(o("cuda"))
        rm(o("cpu"))
    rm(models)
    ctx.results["e2e"] = {"rows": rows, "size": ctx.args.e2e_size, "layers": ctx.args.e2e_layers,
                          "input_bytes": size}
    errors = ["%s %s: %s" % (r["exe"], r["device"], r["error"]) for r in rows if r.get("error")]
    note = ", ".join("%s %s %.2f s" % (r["exe"], r["device"], r["wall_s"]) for r in rows if "wall_s" in r)
    if errors:
        note += "; ERRORS: " + "; ".join(errors)
    return ("fail" if errors else "ok"), note


# --- report --------------------------------------------------------------------------------
def fmt(v, spec="%.2f"):
    if v is None:
        return "-"
    if isinstance(v, float):
        return spec % v
    return str(v)


def write_report(ctx):
    R = ctx.results
    L = []
    env = R.get("env", {})
    gpu = (env.get("nvidia_smi_L") or "?").splitlines()[0] if env else "?"
    L.append("# mergec GPU check")
    L.append("")
    L.append("%s, %s; devices: %s; %.0f s elapsed of a %d s budget." % (
        env.get("date", "?"), gpu, ",".join(ctx.devices), time.time() - ctx.t0, ctx.args.budget))
    L.append("")
    L.append("| step | status | s | note |")
    L.append("| --- | --- | ---: | --- |")
    for s in ctx.steps:
        L.append("| %s | %s | %.1f | %s |" % (s["name"], s["status"].upper() if s["status"] in ("fail", "error")
                                              else s["status"], s["seconds"], s["note"].replace("|", "/")))
    if env:
        L += ["", "## Environment", ""]
        for k in ("host", "cpu", "cpus", "mem_GiB", "glibc", "python", "numpy", "gpu_query", "workdir",
                  "workdir_free_GB", "cpu_flags_missing", "build"):
            if k in env:
                L.append("- %s: %s" % (k, json.dumps(env[k]) if isinstance(env[k], (dict, list)) else env[k]))
        if env.get("nvidia_smi_L"):
            L.append("- nvidia-smi -L: " + env["nvidia_smi_L"].replace("\n", "; "))
        L.append("- executables: " + ", ".join("%s (%s%s%s)" % (e["name"], e["kind"],
                                                                 ", --device" if e["device_flag"] else ", no --device",
                                                                 "" if e["starts"] else ", DOES NOT START")
                                               for e in env.get("exes", [])))
    g = R.get("gtest")
    if g:
        L += ["", "## mergec-cuda-tests", "", "rc %s, %s s: %s passed, %s failed, %s skipped%s" % (
            g["rc"], g["wall"], g["passed"], g["failed"], g["skipped"], (", " + g["hint"]) if g["hint"] else "")]
        if g["failing"]:
            L.append("failing: " + ", ".join(g["failing"]))
        if g["rc"] != 0 or not g["passed"]:
            L += ["```", g["tail"], "```"]
    c = R.get("correctness")
    if c:
        L += ["", "## Correctness (small models: 6 layers, odd shapes, base + 3 fine-tunes; bf16, and f32 for the last column)", "",
              "| exe | cpu s | cuda s | --threads 1 vs cpu | cuda run 2 vs run 1 | cuda vs cpu (bf16) | cuda vs cpu (f32 models) |",
              "| --- | ---: | ---: | --- | --- | --- | --- |"]
        for r in c["rows"]:
            if "error" in r and "cpu_s" not in r:
                L.append("| %s | %s | | | | | |" % (r["exe"], r["error"]))
                continue
            cuda_cell = r.get("cuda") or r.get("error") or ""
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                r["exe"], fmt(r.get("cpu_s")), fmt(r.get("cuda_s")), verdict(r.get("threads1_vs_cpu")),
                verdict(r.get("cuda_run2_vs_run1")) if "cuda_run2_vs_run1" in r else cuda_cell,
                verdict(r.get("cuda_vs_cpu")) if "cuda_vs_cpu" in r else cuda_cell,
                verdict(r.get("f32_cuda_vs_cpu")) if "f32_cuda_vs_cpu" in r else "-"))
        worst = []
        for r in c["rows"]:
            for key in ("cuda_vs_cpu", "f32_cuda_vs_cpu"):
                s = r.get(key)
                if s and not s.get("identical") and not s.get("errors"):
                    worst.append("- %s %s: histogram %s; worst: %s" % (r["exe"], key, json.dumps(s["hist"]), "; ".join(
                        "%s %s ulp (%d el.)" % (w["tensor"], w["max_ulp"], w["differing"]) for w in s["worst"][:4])))
        if worst:
            L += ["", "Where cuda and cpu differ (tensors name the recipe's rule, see recipes/):", ""] + worst
    t = R.get("torch", {})
    bw = t.get("bandwidth", {}) if isinstance(t, dict) else {}
    d2d_rw = bw.get("d2d_copy_rw_GBps")
    k = R.get("kernel_bench")
    if k:
        L += ["", "## Kernel benchmark (%d tensors of 4096 x 14336 bf16 per model, base + 3 fine-tunes)" %
              ctx.args.bench_tensors, "",
              "Kernel time from `--verbose`'s `cuda:` line (best of %d runs), per tensor; GB/s counts the minimal "
              "traffic, 4 inputs read + 1 output written (%.0f MB per tensor); `of d2d` divides by torch's "
              "device-to-device copy (read + write) bandwidth%s." % (
                  ctx.args.bench_reps, traffic_per_tensor(4096, 14336) / 1e6,
                  (" (%s GB/s)" % d2d_rw) if d2d_rw else " (not measured)"), "",
              "| exe | kernel ms/tensor | GB/s | of d2d | torch eager ms | torch / mergec | cuda wall s | cpu wall s | H2D GB/s | peak MiB | cuda vs cpu |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        tm = t.get("methods", {}) if isinstance(t, dict) else {}
        tmap = {"bench-ta": "task_arithmetic", "bench-ties": "ties", "bench-dare-ties": "dare_ties",
                "bench-geomedian": "geomedian"}
        for r in k["rows"]:
            tms = tm.get(tmap.get(r["exe"], ""), {}).get("ms")
            last = (r.get("cuda_lines") or [{}])[-1]
            kpt = r.get("kernel_ms_per_tensor")
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["exe"], fmt(kpt, "%.3f"), fmt(r.get("kernel_GBps"), "%.0f"),
                fmt(r["kernel_GBps"] / d2d_rw, "%.2f") if d2d_rw and r.get("kernel_GBps") else "-",
                fmt(tms, "%.2f"), fmt(tms / kpt, "%.1fx") if tms and kpt else "-",
                "/".join("%.2f" % x for x in r.get("cuda_wall_s", [])) or (r.get("cuda") or r.get("error") or "-"),
                fmt(r.get("cpu_wall_s")), fmt(last.get("h2d_GBps")), fmt(last.get("peak_MiB"), "%.0f"),
                verdict(r.get("cuda_vs_cpu"))))
        for r in k["rows"]:
            for l in r.get("cuda_lines", [])[-1:]:
                L.append("- %s: `%s`" % (r["exe"], l["line"]))
    if t:
        L += ["", "## PyTorch baseline (torch_bench.py)", ""]
        if t.get("skipped") or t.get("error"):
            L.append("%s" % (t.get("skipped") or t.get("error")))
        else:
            L.append("torch %s (CUDA %s) on %s, %d x %d bf16 x 4 models, median of %d after %d warm-up; import %s s." % (
                t.get("torch"), t.get("cuda"), t.get("device"), t["rows"], t["cols"], t["reps"], t["warmup"],
                t.get("import_s")))
            L.append("")
            L.append("- bandwidth: " + ", ".join("%s %s" % kv for kv in bw.items()))
            L += ["", "| method | ms (median) | best ms | GB/s (min traffic) | of d2d | peak MiB | note |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
            for name, m in t.get("methods", {}).items():
                if "error" in m:
                    L.append("| %s | | | | | | %s |" % (name, m["error"][:150]))
                else:
                    L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                        name, m["ms"], m["best_ms"], m["GBps"], m.get("of_d2d", "-"), m.get("peak_MiB"),
                        ("%d Weiszfeld iterations" % m["iterations"]) if "iterations" in m else ""))
    e = R.get("e2e")
    if e:
        h2d = bw.get("h2d_pinned_GBps")
        L += ["", "## End to end (%s models, %d layers: 4 x %.2f GB in, bf16)" % (
            e["size"], e["layers"], e["input_bytes"] / 4e9), "",
              "Input GB/s = the 4 inputs' bytes / wall time; `of H2D` divides by torch's pinned host->device "
              "bandwidth%s." % ((" (%s GB/s)" % h2d) if h2d else " (not measured)"), "",
              "| exe | device | wall s | merge s (its own line) | input GB/s | of H2D | cuda line | cuda vs cpu |",
              "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
        for r in e["rows"]:
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["exe"], r["device"], fmt(r.get("wall_s")) if "wall_s" in r else (r.get("skipped") or r.get("error")),
                fmt(r.get("merged_s")),
                fmt(r.get("input_GBps")), fmt(r["input_GBps"] / h2d, "%.2f") if h2d and r.get("input_GBps") else "-",
                ("`%s`" % r["cuda_line"]["line"]) if r.get("cuda_line") else "", verdict(r.get("cuda_vs_cpu"))))
    gen = R.get("generate")
    if gen:
        L += ["", "Model generation: " + "; ".join("%s %.1f s" % (k2, v["seconds"]) for k2, v in gen.items())]
    L += ["", "Files: report.md, report.json, log.txt (every command, its exit status and the tail of its "
          "output), compare.json (per-tensor differences), torch_bench.json."]
    with open(os.path.join(ctx.out, "report.md.tmp"), "w") as f:
        f.write("\n".join(L) + "\n")
    os.replace(os.path.join(ctx.out, "report.md.tmp"), os.path.join(ctx.out, "report.md"))
    with open(os.path.join(ctx.out, "report.json"), "w") as f:
        json.dump({"steps": ctx.steps, "results": ctx.results}, f, indent=1, default=str)
    with open(os.path.join(ctx.out, "compare.json"), "w") as f:
        json.dump(ctx.compare_details, f, separators=(",", ":"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-report")
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--budget", type=float, default=450, help="seconds for the whole run")
    ap.add_argument("--steps", default="env,gtest,correctness,kernel_bench,torch,e2e")
    ap.add_argument("--workdir", help="where models and outputs go (default: /dev/shm when it has room)")
    ap.add_argument("--need-gb", type=float, default=16, help="free space wanted in the workdir")
    ap.add_argument("--run-timeout", type=float, default=45)
    ap.add_argument("--gtest-timeout", type=float, default=90)
    ap.add_argument("--bench-tensors", type=int, default=4)
    ap.add_argument("--bench-reps", type=int, default=2)
    ap.add_argument("--bench-timeout", type=float, default=90)
    ap.add_argument("--torch-timeout", type=float, default=150)
    ap.add_argument("--torch-cpu", action="store_true", help="without cuda: prove torch_bench.py on the CPU")
    ap.add_argument("--e2e-size", default="1b")
    ap.add_argument("--e2e-layers", type=int, default=4)
    ap.add_argument("--e2e-exes", default="bench-ta,bench-ties")
    ap.add_argument("--e2e-timeout", type=float, default=120)
    ap.add_argument("--no-f32", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for f in ("log.txt", "report.md", "report.json", "compare.json"):
        try:
            os.unlink(os.path.join(args.out, f))
        except OSError:
            pass
    ctx = Ctx(args)
    wanted = args.steps.split(",")
    table = [("env", step_env, 0), ("gtest", step_gtest, 20), ("correctness", step_correctness, 30),
             ("kernel_bench", step_kernel_bench, 60), ("torch", step_torch, 40), ("e2e", step_e2e, 60)]
    for name, fn, need in table:
        if name in wanted or name == "env":
            step(ctx, name, fn, need)
            if name == "env" and ctx.work is None:
                break
    if ctx.work and not args.keep:
        rm(ctx.work)
    write_report(ctx)
    bad = [s["name"] for s in ctx.steps if s["status"] in ("fail", "error")]
    print("gpu_check: %s; %.0f s; report: %s" % ("FAILED: " + ",".join(bad) if bad else "no failures",
                                                  time.time() - ctx.t0, os.path.join(ctx.out, "report.md")))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
