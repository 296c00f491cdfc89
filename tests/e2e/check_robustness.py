"""Atomic output under SIGKILL and a full disk; reproducible outputs and the manifest.

  --case sigkill     mergec killed with SIGKILL at random points: OUT is absent (or complete, when
                     the kill came after the rename); a later run succeeds and removes the
                     leftover .OUT.mergec-tmp-PID directory
  --case full-disk   OUT on a 1 MiB tmpfs: a clear "no space left" error, exit 1, nothing left
                     (skipped, saying so, where tmpfs cannot be mounted)
  --case max-memory a merge needing more than --max-memory is refused before it starts
  --case reproduce   two runs and --threads 1/2/5 give byte-identical shards; the manifest
                     records the recipe, its sha256, the params, the inputs and their sizes"""
import glob
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import time

import models
import runner
import st

RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    model b    = "models/b"
    param lam  = 0.5
    merge base + lam * (tv(a) + tv(b)) / 2
    """


def make_models(work, hidden=64, intermediate=128, vocab=256, layers=2):
    base = models.make_llama(os.path.join(work, "models", "base"), "BF16", 1, num_layers=layers,
                             hidden=hidden, intermediate=intermediate, vocab=vocab)
    for name, seed in (("a", 2), ("b", 3)):
        models.make_llama(os.path.join(work, "models", name), "BF16", seed, num_layers=layers,
                          hidden=hidden, intermediate=intermediate, vocab=vocab, base=base)
    return runner.write_recipe(os.path.join(work, "r.merge"), RECIPE)


def digest(directory):
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(directory, "*.safetensors")) +
                       glob.glob(os.path.join(directory, "*.index.json"))):
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def temps(out):
    parent, name = os.path.split(os.path.abspath(out))
    return glob.glob(os.path.join(parent, "." + name + ".mergec-tmp-*"))


def case_sigkill(work):
    recipe = make_models(work, hidden=512, intermediate=1536, vocab=8192, layers=4)
    out = os.path.join(work, "out")
    # An untimed first run fills the kernel cache, so the timed run and the killed ones all load
    # their kernels from it: otherwise the kill points, chosen from a run that compiled, land
    # after faster runs have finished.
    runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--threads", "1"])
    runner.fresh_dir(out)
    os.rmdir(out)
    # The shorter of two timed runs: one slowed by other work on the machine would put the kill
    # points after faster runs have finished.
    full = None
    for _ in range(2):
        start = time.time()
        runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--threads", "1"])
        took = time.time() - start
        full = took if full is None else min(full, took)
        reference = digest(out)
        runner.fresh_dir(out)
        os.rmdir(out)
    rng = random.Random(1234)
    interrupted = 0
    for attempt in range(8):
        p = subprocess.Popen([runner.mergec_path(), "run", recipe, "-o", out, "--quiet",
                              "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 0.9) * full)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if os.path.exists(out):
            # The kill came after the rename: then the output must be complete.
            runner.expect(digest(out) == reference, "output after a late kill differs")
            runner.fresh_dir(out)
            os.rmdir(out)
            continue
        interrupted += 1
        left = temps(out)
        runner.expect(all(".mergec-tmp-" in t for t in left), "unexpected leftovers %s" % left)
        # The next run cleans the dead run's temporary directory and completes.
        runner.run_mergec(["run", recipe, "-o", out, "--quiet"], echo=False)
        runner.expect(digest(out) == reference, "output after a killed run differs")
        runner.expect(not temps(out), "stale temporary directory not removed: %s" % temps(out))
        runner.fresh_dir(out)
        os.rmdir(out)
    runner.expect(interrupted >= 3, "only %d of 8 kills landed mid-merge" % interrupted)
    print("SIGKILL mid-merge %d times: no output left, next run complete and identical" % interrupted)


def case_full_disk(work):
    recipe = make_models(work, hidden=256, intermediate=512, vocab=1024)
    disk = os.path.join(work, "small-disk")
    os.makedirs(disk, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", disk],
                             stderr=subprocess.DEVNULL).returncode == 0
    if not mounted:
        print("SKIPPED: cannot mount a tmpfs here (needs root)")
        print("full disk: skipped")
        return
    try:
        out = os.path.join(disk, "out")
        r = runner.run_mergec(["run", recipe, "-o", out, "--quiet"], expect=1)
        runner.expect("no space left on device" in r.stderr, "no 'no space' message:\n" + r.stderr)
        runner.expect("mergec: error:" in r.stderr, r.stderr)
        runner.assert_no_output(out)
        print(r.stderr.strip().splitlines()[0])
        print("full disk: clear error, exit 1, nothing left")
    finally:
        subprocess.run(["umount", disk])


def case_reproduce(work):
    recipe = make_models(work, hidden=256, intermediate=768, vocab=2048)
    digests = []
    for i, threads in enumerate([None, None, 1, 2, 5]):
        out = os.path.join(work, "out%d" % i)
        args = ["run", recipe, "-o", out, "--quiet", "--shard-size", "1MB"]
        if threads:
            args += ["--threads", threads]
        runner.run_mergec(args, echo=False)
        digests.append(digest(out))
    runner.expect(len(set(digests)) == 1, "outputs differ: %s" % digests)
    print("2 runs and --threads 1, 2, 5: byte-identical (%s)" % digests[0][:16])

    manifest = json.load(open(os.path.join(work, "out0", "mergec-manifest.json")))
    text = open(recipe).read()
    runner.expect(manifest["recipe"]["text"] == text, "manifest recipe text")
    runner.expect(manifest["recipe"]["sha256"] == hashlib.sha256(text.encode()).hexdigest(),
                 "manifest recipe sha256")
    runner.expect(manifest["params"] == {"lam": 0.5}, "manifest params %s" % manifest["params"])
    runner.expect(manifest["mergec_version"], "manifest version")
    names = [m["name"] for m in manifest["inputs"]]
    runner.expect(names == ["base", "a", "b"], "manifest inputs %s" % names)
    for m in manifest["inputs"]:
        for f in m["files"]:
            runner.expect(os.path.isabs(f["path"]) and os.path.getsize(f["path"]) == f["bytes"],
                         "manifest file %s" % f)
    print("manifest: recipe, sha256, params, %d inputs with sizes" % len(names))


def peak_rss(args):
    """Runs mergec ARGS under /usr/bin/time (whose own fork is tiny, so the peak is mergec's);
    returns (Result, peak resident bytes), or (Result, None) where there is no /usr/bin/time."""
    if not os.path.exists("/usr/bin/time"):
        return runner.run_mergec(args, echo=False), None
    cmd = ["/usr/bin/time", "-f", "peak-rss-kib %M", runner.mergec_path()] + [str(a) for a in args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    r = runner.Result(cmd, p.returncode, p.stdout.decode(), p.stderr.decode())
    runner.expect(r.rc == 0, "expected exit status 0\n" + r.describe())
    kib = [int(l.split()[1]) for l in r.stderr.splitlines() if l.startswith("peak-rss-kib ")]
    return r, kib[-1] * 1024


def case_max_memory(work):
    recipe = make_models(work, hidden=256, intermediate=512, vocab=1024)
    out = os.path.join(work, "out")
    r = runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--max-memory", "100KB"], expect=1)
    message = r.stderr.strip()
    runner.expect("needs about" in message and "more than --max-memory" in message and
                  "model.embed_tokens.weight" in message, "unclear message:\n" + message)
    runner.assert_no_output(out)
    print(message.splitlines()[0])
    # The same merge within a sufficient limit runs.
    runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--max-memory", "1GiB"], echo=False)
    print("max-memory: refused before starting, with the arithmetic; runs within the limit")

    # The estimate holds: a merge with selection and row scratch (della ranks rows; the [n, 1]
    # norm weights too) at --max-memory = its own estimate peaks below it. Buffers and input
    # pages alone (the estimate before mergec itself and the scratch were counted) fall short.
    models_dir = os.path.join(work, "big")
    base = models.make_llama(os.path.join(models_dir, "base"), "BF16", 1, num_layers=2, hidden=512,
                             intermediate=1408, vocab=8192)
    for name, seed in (("a", 2), ("b", 3)):
        models.make_llama(os.path.join(models_dir, name), "BF16", seed, num_layers=2, hidden=512,
                          intermediate=1408, vocab=8192, base=base)
    della = runner.write_recipe(os.path.join(work, "della.merge"), """
        model base = "big/base"
        model a    = "big/a"
        model b    = "big/b"
        merge base + della([tv(a), tv(b)], density = 0.3) + ties([tv(a), tv(b)], density = 0.5)
        """)
    # --no-cache: every run compiles its kernels, so mergec itself is the same size in each (a
    # run that loads them from the cache is smaller, and its estimate says so).
    r, peak = peak_rss(["run", della, "-o", os.path.join(work, "held"), "--quiet", "--verbose",
                        "--no-cache", "--max-memory", "1GiB"])
    line = [l for l in r.stderr.splitlines() if l.startswith("memory: about")][0]
    print(line)
    estimate = int(re.search(r"\((\d+) bytes", line).group(1))
    runner.expect("mergec itself" in line and "of selection and row scratch" in line, line)
    if peak is None:
        print("peak RSS: skipped (no /usr/bin/time)")
    elif "ASAN_OPTIONS" in os.environ:
        # AddressSanitizer's shadow memory and quarantine are resident too; the estimate is for
        # mergec as users run it.
        print("peak RSS: skipped (under AddressSanitizer)")
    else:
        # The largest tensor (the embeddings, bf16) read from three models, its output in five
        # windows of at most 4 Mi elements (the four the writer may hold and the one computed).
        largest = max(v.size for v in base.values()) * 2
        buffers_and_inputs = 5 * min(largest, 4 * 2**20 * 2) + 2 * 3 * largest
        print("peak RSS %.1f MiB <= estimate %.1f MiB; buffers and input pages alone %.1f MiB" % (
            peak / 2**20, estimate / 2**20, buffers_and_inputs / 2**20))
        runner.expect(peak <= estimate, "peak RSS %d above the estimate %d" % (peak, estimate))
        runner.expect(buffers_and_inputs < peak, "buffers and inputs alone already cover the peak")
    # The limit is the estimate: a little above runs, well below is refused before starting.
    mib = estimate // 2**20
    runner.run_mergec(["run", della, "-o", os.path.join(work, "at-limit"), "--quiet", "--no-cache",
                       "--max-memory", "%dMiB" % (mib + 4)], echo=False)
    r = runner.run_mergec(["run", della, "-o", os.path.join(work, "refused"), "--quiet", "--no-cache",
                           "--max-memory", "%dMiB" % (mib - 16)], expect=1, echo=False)
    runner.expect("more than --max-memory" in r.stderr, r.stderr)
    runner.assert_no_output(os.path.join(work, "refused"))
    print("at the estimate + 4 MiB: runs; 16 MiB below: refused")


CASES = {"sigkill": case_sigkill, "full-disk": case_full_disk, "reproduce": case_reproduce,
         "max-memory": case_max_memory}

if __name__ == "__main__":
    runner.main(lambda args: CASES[args.case](runner.fresh_dir(args.work)),
                lambda parser: parser.add_argument("--case", required=True, choices=sorted(CASES)))
