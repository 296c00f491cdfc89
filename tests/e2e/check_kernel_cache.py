"""The kernel cache (mergec run --cache-dir / $MERGEC_CACHE_DIR / --no-cache).

A cold run compiles every kernel and stores it; a warm run loads every kernel and compiles
nothing; outputs are byte-identical cold, warm and without the cache. Another build of mergec
(the same version) compiles its own kernels instead of loading this build's. Past
$MERGEC_CACHE_MAX the least recently used entries are removed (loads refresh an entry), never
the run's own, and so are temporaries of writers killed over a day ago. A corrupt,
truncated or foreign entry is detected, recompiled and rewritten; two runs sharing a cold cache
both succeed; --no-cache writes nothing; a cache that cannot be written is a warning, not an
error."""
import glob
import os
import re
import shutil
import stat
import subprocess
import time

import models
import runner

RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    model b    = "models/b"
    merge {
      "lm_head.weight"     => base
      "*.embed_tokens.*"   => base + 0.5 * tv(a)
      "*.self_attn.*"      => base + ties([tv(a), tv(b)], density = 0.3)
      "*.mlp.*"            => base + dare_linear([tv(a), tv(b)], density = 0.5, seed = 7)
      _                    => slerp(base, a, t = 0.25)
    }
    """


def jit_lines(stderr):
    return re.findall(r"^jit: (rule_\d+) \(([^)]*)\): (compiled|loaded from the cache) in [0-9.]+ ms$",
                      stderr, re.M)


def digest(out):
    return {f: open(os.path.join(out, f), "rb").read()
            for f in sorted(os.listdir(out)) if f.endswith(".safetensors")}


def run(recipe, work, out, *extra):
    runner.fresh_dir(out)
    os.rmdir(out)
    return runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--verbose"] + list(extra),
                             cwd=work, echo=False)


def body(args):
    work = runner.fresh_dir(args.work)
    base = models.make_llama(os.path.join(work, "models", "base"), "BF16", 1)
    for name, seed in (("a", 2), ("b", 3)):
        models.make_llama(os.path.join(work, "models", name), "BF16", seed, base=base)
    recipe = runner.write_recipe(os.path.join(work, "r.merge"), RECIPE)
    cache = os.path.join(work, "cache")
    out = os.path.join(work, "out")

    cold = run(recipe, work, out, "--cache-dir", cache)
    lines = jit_lines(cold.stderr)
    runner.expect(len(lines) == 4 and all(how == "compiled" for _, _, how in lines), cold.stderr)
    reference = digest(out)
    entries = sorted(glob.glob(os.path.join(cache, "*.kernel")))
    runner.expect(len(entries) == 4, "entries: %s" % entries)
    print("cold: %d kernels compiled, %d cache entries" % (len(lines), len(entries)))

    warm = run(recipe, work, out, "--cache-dir", cache)
    lines = jit_lines(warm.stderr)
    runner.expect(len(lines) == 4 and all(how == "loaded from the cache" for _, _, how in lines),
                  warm.stderr)
    runner.expect("0 kernel(s) compiled, 4 loaded from the cache" in warm.stderr, warm.stderr)
    runner.expect(digest(out) == reference, "warm output differs from cold")
    # $MERGEC_CACHE_DIR names the same cache.
    env_run = subprocess.run([runner.mergec_path(), "run", recipe, "-o", os.path.join(work, "env"),
                              "--quiet", "--verbose"], cwd=work, capture_output=True, text=True,
                             env=dict(os.environ, MERGEC_CACHE_DIR=cache))
    runner.expect("0 kernel(s) compiled, 4 loaded" in env_run.stderr, env_run.stderr)
    print("warm: 4 kernels loaded, 0 compiled, output identical")

    # Another build of the same version: this binary with its GNU build ID changed, as a rebuild
    # with a changed lowering pass has (the keyed module is the target-neutral loops; the passes
    # after it are the compiler's own code). It compiles its own kernels, the same output, and
    # leaves this build's entries as they were.
    image = bytearray(open(runner.mergec_path(), "rb").read())
    note = re.search(rb"\x04\x00\x00\x00(.{4})\x03\x00\x00\x00GNU\x00", image, re.S)
    runner.expect(note is not None, "no GNU build ID note in " + runner.mergec_path())
    image[note.end()] ^= 0xFF
    other = os.path.join(work, "mergec-other-build")
    with open(other, "wb") as f:
        f.write(image)
    del image
    os.chmod(other, stat.S_IRWXU)
    rebuilt = subprocess.run([other, "run", recipe, "-o", os.path.join(work, "rebuilt"), "--quiet",
                              "--verbose", "--cache-dir", cache], cwd=work, capture_output=True,
                             text=True)
    runner.expect(rebuilt.returncode == 0, rebuilt.stderr)
    runner.expect("4 kernel(s) compiled, 0 loaded" in rebuilt.stderr, rebuilt.stderr)
    runner.expect(digest(os.path.join(work, "rebuilt")) == reference,
                  "another build's output differs")
    runner.expect(len(glob.glob(os.path.join(cache, "*.kernel"))) == 8, "another build's entries")
    os.remove(other)
    for entry in set(glob.glob(os.path.join(cache, "*.kernel"))) - set(entries):
        os.remove(entry)
    again = run(recipe, work, out, "--cache-dir", cache)
    runner.expect("0 kernel(s) compiled, 4 loaded" in again.stderr, again.stderr)
    print("another build of this version: compiles its own 4 kernels, identical output")

    nocache = run(recipe, work, out, "--no-cache")
    runner.expect(all(how == "compiled" for _, _, how in jit_lines(nocache.stderr)), nocache.stderr)
    runner.expect(digest(out) == reference, "--no-cache output differs")
    runner.expect(sorted(glob.glob(os.path.join(cache, "*.kernel"))) == entries, "--no-cache wrote")
    print("--no-cache: compiled, identical, nothing stored")

    # Damage three entries three ways; keep the fourth intact.
    with open(entries[0], "r+b") as f:  # a flipped bit in the object code
        data = bytearray(f.read())
        data[-100] ^= 0x10
        f.seek(0)
        f.write(data)
    with open(entries[1], "r+b") as f:  # truncated, as by a crash without rename
        f.truncate(os.path.getsize(entries[1]) // 2)
    shutil.copy(entries[3], entries[2])  # another kernel's entry under this key
    damaged = run(recipe, work, out, "--cache-dir", cache)
    found = re.findall(r"cache entry \S+ is damaged \(([^)]*)\)", damaged.stderr)
    print("damaged: " + "; ".join(sorted(found)))
    runner.expect(len(found) == 3, damaged.stderr)
    hows = sorted(how for _, _, how in jit_lines(damaged.stderr))
    runner.expect(hows == ["compiled"] * 3 + ["loaded from the cache"], damaged.stderr)
    runner.expect(digest(out) == reference, "output after damaged entries differs")
    again = run(recipe, work, out, "--cache-dir", cache)
    runner.expect("0 kernel(s) compiled, 4 loaded" in again.stderr, "entries not rewritten:\n" + again.stderr)
    print("damaged entries recompiled and rewritten; output identical")

    # Two runs sharing a cold cache.
    shared = os.path.join(work, "shared-cache")
    procs = [subprocess.Popen([runner.mergec_path(), "run", recipe, "-o", os.path.join(work, "c%d" % i),
                               "--quiet", "--cache-dir", shared], cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        runner.expect(p.returncode == 0, err.decode())
    runner.expect(digest(os.path.join(work, "c0")) == reference == digest(os.path.join(work, "c1")),
                  "concurrent outputs differ")
    runner.expect(len(glob.glob(os.path.join(shared, "*.kernel"))) == 4, "shared cache entries")
    runner.expect(not glob.glob(os.path.join(shared, ".*")), "temporaries left in the cache")
    print("two concurrent runs, one cold cache: both succeed, identical, 4 entries")

    # A param that only scales values is read when the kernels run: another --set value reuses
    # the cached kernel (and gives another output).
    swept = runner.write_recipe(os.path.join(work, "sweep.merge"), """
        model base = "models/base"
        model a    = "models/a"
        param lam  = 0.5
        merge base + lam * tv(a)
        """)
    sweep_cache = os.path.join(work, "sweep-cache")
    first = run(swept, work, out, "--cache-dir", sweep_cache, "--set", "lam=0.25")
    half = digest(out)
    second = run(swept, work, out, "--cache-dir", sweep_cache, "--set", "lam=0.75")
    runner.expect("1 kernel(s) compiled, 0 loaded" in first.stderr, first.stderr)
    runner.expect("0 kernel(s) compiled, 1 loaded" in second.stderr, second.stderr)
    runner.expect(digest(out) != half, "--set lam changed nothing")
    print("param sweep: --set lam=0.75 after lam=0.25 loads the cached kernel")

    # A cache over $MERGEC_CACHE_MAX: after a run stores an entry, the least recently used go
    # first (a load refreshes an entry's time) until the entries fill 3/4 of the limit; the
    # run's own kernels stay, and so does a temporary younger than a day.
    lru = os.path.join(work, "lru-cache")
    run(recipe, work, out, "--cache-dir", lru)
    old = sorted(glob.glob(os.path.join(lru, "*.kernel")))
    runner.expect(len(old) == 4, "lru entries: %s" % old)
    now = time.time()
    for age, entry in enumerate(old):  # old[0] the least recently used, 4 days ago
        os.utime(entry, (now - (4 - age) * 86400, now - (4 - age) * 86400))
    warm = run(recipe, work, out, "--cache-dir", lru)  # loads refresh every entry's time
    runner.expect("0 kernel(s) compiled, 4 loaded" in warm.stderr, warm.stderr)
    runner.expect(all(os.path.getmtime(e) > now - 3600 for e in old), "loads did not refresh")
    for age, entry in enumerate(old):
        os.utime(entry, (now - (4 - age) * 86400, now - (4 - age) * 86400))
    key = os.path.basename(old[0])[:-len(".kernel")]
    stale, young = (os.path.join(lru, ".%s.tmp-%d-0" % (key, pid)) for pid in (1, 2))
    for path in (stale, young):
        open(path, "w").close()
    os.utime(stale, (now - 2 * 86400, now - 2 * 86400))
    sizes = {e: os.path.getsize(e) for e in old}
    limit = sum(sizes.values())  # the sweep recipe's entry takes the cache past it
    pruned = subprocess.run([runner.mergec_path(), "run", swept, "-o", os.path.join(work, "lru"),
                             "--quiet", "--verbose", "--cache-dir", lru], cwd=work,
                            capture_output=True, text=True,
                            env=dict(os.environ, MERGEC_CACHE_MAX=str(limit)))
    runner.expect(pruned.returncode == 0, pruned.stderr)
    new = set(glob.glob(os.path.join(lru, "*.kernel"))) - set(old)
    runner.expect(len(new) == 1, "the run's entry: %s" % new)
    total, gone = sum(sizes.values()) + os.path.getsize(new.pop()), []
    for entry in old:  # the expectation: oldest first, down to 3/4 of the limit
        if total <= limit // 4 * 3:
            break
        total -= sizes[entry]
        gone.append(entry)
    kept = [e for e in old if os.path.exists(e)]
    runner.expect(gone and kept == [e for e in old if e not in gone],
                  "removed %s, expected %s" % (sorted(set(old) - set(kept)), gone))
    runner.expect(not os.path.exists(stale) and os.path.exists(young), "temporaries")
    said = "removed %d least recently used entr%s" % (len(gone), "y" if len(gone) == 1 else "ies")
    runner.expect(said in pruned.stderr and "1 temporary of runs killed" in pruned.stderr,
                  pruned.stderr)
    # A limit below one entry: everything older goes, the run's own kernel stays.
    third = runner.write_recipe(os.path.join(work, "third.merge"), """
        model base = "models/base"
        model b    = "models/b"
        merge base + 0.125 * tv(b)
        """)
    tiny = subprocess.run([runner.mergec_path(), "run", third, "-o", os.path.join(work, "tiny"),
                           "--quiet"], cwd=work, capture_output=True, text=True,
                          env=dict(os.environ, MERGEC_CACHE_DIR=lru, MERGEC_CACHE_MAX="1"))
    runner.expect(tiny.returncode == 0, tiny.stderr)
    left = glob.glob(os.path.join(lru, "*.kernel"))
    runner.expect(len(left) == 1 and os.path.getmtime(left[0]) > now - 3600, "left: %s" % left)
    bad = subprocess.run([runner.mergec_path(), "run", recipe, "-o", os.path.join(work, "bad"),
                          "--cache-dir", lru], cwd=work, capture_output=True, text=True,
                         env=dict(os.environ, MERGEC_CACHE_MAX="lots"))
    runner.expect(bad.returncode == 1 and "MERGEC_CACHE_MAX: 'lots' is not a size" in bad.stderr
                  and not os.path.exists(os.path.join(work, "bad")), bad.stderr)
    print("MERGEC_CACHE_MAX=%d: the %d least recently used of 4 removed, the run's own and the "
          "others kept; a stale temporary removed; at 1 byte only the run's own kernel left; "
          "'lots' refused" % (limit, len(gone)))

    # A cache that cannot be created: one warning, the merge goes on.
    blocked = os.path.join(work, "not-a-dir")
    open(blocked, "w").close()
    r = run(recipe, work, out, "--cache-dir", os.path.join(blocked, "cache"))
    runner.expect(r.stderr.count("mergec: warning: kernel cache:") == 1, r.stderr)
    runner.expect(digest(out) == reference, "output without a writable cache")
    print("unwritable cache: one warning, output identical")


if __name__ == "__main__":
    runner.main(body)
