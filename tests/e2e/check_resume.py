"""`mergec run --resume` continues a merge killed with SIGKILL (docs/cli.md, "Resuming").

  --case kills      runs killed at seeded random points (between tensors, during the model-scope
                    analysis, inside a dare_ties rule), each resumed: byte-identical to an
                    uninterrupted run (shards, index, side files, model card; the manifest but
                    for its "resumed" keys). Without --resume the next run says what it removed
  --case damage     a byte flipped in a journalled tensor: that tensor and the rest are redone
  --case refuse     a changed recipe, --set, --dtype or input file (mtime, size): the resume is
                    refused with the reason and the unfinished output stays as it was; put back,
                    the resume goes through
  --case nothing    --resume with nothing to resume: a note, then a normal run

The runs killed mid-merge use the MERGEC_TEST_DELAY_US hook (a pause after each tensor the
writer journals and each tensor the analysis reads) so that a kill lands where it is aimed."""
import glob
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time

import models
import runner
import st as stfile

SHAPE = dict(num_layers=10, hidden=64, intermediate=128, vocab=256)
RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    model b    = "models/b"
    param lam = 0.5
    merge {
      "*.mlp.*" => base + ties([tv(a), tv(b)], density = 0.3, scope = model)
      "*.self_attn.o_proj.*" => base + tv(a) * topk_mask(tv(b), 0.3, skip = 0.05, scope = model)
      "*.self_attn.*" => base + dare_ties([tv(a), tv(b)], density = 0.5, seed = 7)
      _ => base + lam * tv(a)
    }
    """
SHARD = "40KB"
DELAY_US = "15000"


def setup(work):
    base = models.make_llama(os.path.join(work, "models", "base"), "BF16", 1, **SHAPE)
    for seed, name in ((2, "a"), (3, "b")):
        models.make_llama(os.path.join(work, "models", name), "BF16", seed, base=base, **SHAPE)
    os.environ["MERGEC_CACHE_DIR"] = os.path.join(work, "cache")
    recipe = runner.write_recipe(os.path.join(work, "r.merge"), RECIPE)
    ref = os.path.join(work, "ref")
    runner.run_mergec(["run", recipe, "-o", ref, "--shard-size", SHARD, "--quiet"], cwd=work,
                      echo=False)
    shards = [f for f in os.listdir(ref) if f.endswith(".safetensors")]
    runner.expect(len(shards) >= 4, "expected several shards, got %s" % shards)
    return recipe, ref


def temps(out):
    parent, name = os.path.split(os.path.abspath(out))
    return glob.glob(os.path.join(parent, "." + name + ".mergec-tmp-*"))


def journal_entries(out):
    """The complete entry lines of the unfinished output's journal (none: -1)."""
    for t in temps(out):
        try:
            with open(os.path.join(t, "mergec-journal"), "rb") as f:
                text = f.read()
        except OSError:
            continue
        return max(text.count(b"\n") - 1, 0)
    return -1


def start(recipe, out, work, extra=(), delay=DELAY_US):
    env = dict(os.environ, MERGEC_TEST_DELAY_US=delay)
    err = open(os.path.join(work, "killed.stderr"), "w+")
    p = subprocess.Popen([runner.mergec_path(), "run", recipe, "-o", out, "--shard-size", SHARD,
                          "--threads", "1"] + list(extra), cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=err)
    return p, err


def kill_at(recipe, out, work, entries=None, stderr_mark=None, pause=0.0):
    """Starts a run and SIGKILLs it once its journal holds `entries` entries, or `pause` s after
    `stderr_mark` appears on its stderr. Returns the journal's entry count after the kill."""
    p, err = start(recipe, out, work)
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            runner.expect(p.poll() is None, "the run finished before it was killed")
            if entries is not None and journal_entries(out) >= entries:
                break
            if stderr_mark is not None:
                err.seek(0)
                if stderr_mark in err.read():
                    time.sleep(pause)
                    break
            time.sleep(0.002)
        else:
            raise runner.TestFailure("the kill point never came")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        err.close()
    runner.expect(len(temps(out)) == 1, "no unfinished output after the kill: %s" % temps(out))
    return journal_entries(out)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_identical(out, ref, reused=None):
    """Every file of `out` byte-identical to `ref`'s, the manifest but for its resume keys."""
    files = sorted(os.listdir(out))
    runner.expect(files == sorted(os.listdir(ref)), "files %s, expected %s" % (files, sorted(os.listdir(ref))))
    for f in files:
        if f == "mergec-manifest.json":
            continue
        runner.expect(digest(os.path.join(out, f)) == digest(os.path.join(ref, f)), "%s differs" % f)
    with open(os.path.join(out, "mergec-manifest.json")) as f:
        got = json.load(f)
    with open(os.path.join(ref, "mergec-manifest.json")) as f:
        want = json.load(f)
    if reused is not None:
        runner.expect(got.pop("resumed", None) is True and
                      got.pop("resumed_tensors_reused", None) == reused,
                      "the manifest does not record the resume (%s reused)" % reused)
    runner.expect(got == want, "the manifests differ beyond the resume")
    runner.expect(not temps(out), "temporary left: %s" % temps(out))


def resume(recipe, out, work, ref, expect_reason=None):
    r = runner.run_mergec(["run", recipe, "-o", out, "--shard-size", SHARD, "--resume"], cwd=work,
                          echo=False)
    line = [l for l in r.stderr.splitlines() if l.startswith("mergec: resuming:")]
    runner.expect(len(line) == 1, r.stderr)
    reused = int(line[0].split()[2])
    if expect_reason:
        runner.expect(expect_reason in line[0], line[0])
    check_identical(out, ref, reused)
    runner.fresh_dir(out)
    os.rmdir(out)
    return reused, line[0]


def plan_order(ref):
    """The output's tensor names in plan (file) order."""
    with open(os.path.join(ref, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    names = []
    for name in files:
        with open(os.path.join(ref, name), "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        names += sorted(header, key=lambda k: header[k]["data_offsets"][0])
    return names


def case_kills(work):
    recipe, ref = setup(work)
    out = os.path.join(work, "out")
    names = plan_order(ref)
    rng = random.Random(20240517)
    # One point in each quarter, and one after the last tensor (the side files, manifest and
    # model card written, not yet committed: the writer pauses there too).
    n = len(names)
    points = [rng.randrange(max(1, k * n // 4), (k + 1) * n // 4) for k in range(4)] + [n]
    for target in points:
        got = kill_at(recipe, out, work, entries=target)
        reused, _ = resume(recipe, out, work, ref)
        runner.expect(got <= reused + 1 and reused <= got, "killed at %d entries, reused %d" % (got, reused))
        print("killed after %d of %d tensors: resumed, identical" % (target, len(names)))
    # During the model-scope analysis: nothing journalled yet; the analysis runs again.
    got = kill_at(recipe, out, work, stderr_mark="model scope: rule", pause=rng.uniform(0.05, 0.2))
    runner.expect(got == 0, "the analysis kill came after %d tensors" % got)
    resume(recipe, out, work, ref)
    print("killed during the model-scope analysis: resumed, identical")
    # Just after the first dare_ties tensor (a random method) was written.
    first = next(i for i, n in enumerate(names) if ".self_attn." in n and "o_proj" not in n)
    got = kill_at(recipe, out, work, entries=first + 1)
    reused, _ = resume(recipe, out, work, ref)
    runner.expect(reused > first, "reused %d, the dare_ties tensor is %d" % (reused, first))
    print("killed after a dare_ties tensor: resumed, identical")
    # Without --resume: started over, with a note saying what was removed.
    got = kill_at(recipe, out, work, entries=points[2])
    r = runner.run_mergec(["run", recipe, "-o", out, "--shard-size", SHARD], cwd=work, echo=False)
    runner.expect("mergec: note: removed the unfinished output of an earlier run (%d tensors done); "
                  "--resume would have continued it" % got in r.stderr, r.stderr)
    check_identical(out, ref)
    print("without --resume: removed with a note")


def case_damage(work):
    recipe, ref = setup(work)
    out = os.path.join(work, "out")
    names = plan_order(ref)
    got = kill_at(recipe, out, work, entries=len(names) * 2 // 3)
    tmp = temps(out)[0]
    with open(os.path.join(tmp, "mergec-journal")) as f:
        lines = f.read().split("\n")[1:got]
    victim = json.loads(lines[len(lines) // 2].split(" ", 2)[2])
    shard = os.path.join(tmp, next(f for f in sorted(os.listdir(tmp)) if f.endswith(".safetensors")
                                   and victim in open(os.path.join(tmp, f), "rb").read(1 << 16).decode("latin-1")))
    with open(shard, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    begin, end = header[victim]["data_offsets"]
    with open(shard, "r+b") as f:
        f.seek(8 + n + (begin + end) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x10]))
    reused, line = resume(recipe, out, work, ref,
                          expect_reason="tensor '%s' in %s: its bytes do not match the journal" %
                          (victim, os.path.basename(shard)))
    runner.expect(reused == names.index(victim), line)
    print(line.replace(os.path.basename(shard), "SHARD"))
    print("damaged tensor redone: identical")


def tree_digest(root):
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            h.update(name.encode())
            h.update(digest(os.path.join(d, name)).encode())
    return h.hexdigest()


def case_refuse(work):
    recipe, ref = setup(work)
    out = os.path.join(work, "out")
    got = kill_at(recipe, out, work, entries=20)
    tmp = temps(out)[0]
    before = tree_digest(tmp)
    with open(recipe) as f:
        text = f.read()
    changed = os.path.join(work, "r.merge")
    a_file = os.path.join(work, "models", "a", "model.safetensors")
    st = os.stat(a_file)

    def refused(args, reason):
        r = runner.run_mergec(["run", recipe, "-o", out, "--shard-size", SHARD, "--resume"] + args,
                              expect=1, cwd=work, echo=False)
        runner.expect(reason in r.stderr and "run without --resume to start over" in r.stderr,
                      r.stderr)
        runner.expect(temps(out) == [tmp] and tree_digest(tmp) == before and
                      not os.path.exists(out), "a refused resume changed the unfinished output")
        print(r.stderr.strip().replace(work, "WORK"))

    with open(changed, "w") as f:
        f.write(text.replace("density = 0.3", "density = 0.4"))
    refused([], "--resume: the recipe changed since the interrupted run (sha256 ")
    with open(changed, "w") as f:
        f.write(text)
    refused(["--set", "lam=0.7"], "--resume: the params changed since the interrupted run (lam=0.5 then, lam=0.7 now)")
    refused(["--dtype", "f32"], "--resume: --dtype changed since the interrupted run (as base then, F32 now)")
    refused(["--shard-size", "1MB"], "--resume: --shard-size changed since the interrupted run")
    os.utime(a_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    refused([], "--resume: input file %s changed since the interrupted run" % a_file)
    os.utime(a_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    # Another size, the same mtime: the same tensors under a longer header.
    backup = os.path.join(work, "a.bak")
    shutil.copy2(a_file, backup)
    tensors, meta = stfile.read_safetensors(a_file, with_metadata=True)
    stfile.write_safetensors(a_file, tensors, metadata=dict(meta or {}, note="rewritten"))
    os.utime(a_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    runner.expect(os.path.getsize(a_file) != st.st_size, "the size did not change")
    refused([], "--resume: input file %s changed since the interrupted run (%d bytes" % (a_file, st.st_size))
    os.replace(backup, a_file)
    os.utime(a_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    reused, _ = resume(recipe, out, work, ref)
    runner.expect(reused == got, "reused %d of %d" % (reused, got))
    print("refused 6 times, unchanged; then resumed %d tensors: identical" % reused)


def case_nothing(work):
    recipe, ref = setup(work)
    out = os.path.join(work, "out")
    r = runner.run_mergec(["run", recipe, "-o", out, "--shard-size", SHARD, "--resume"], cwd=work,
                          echo=False)
    runner.expect("mergec: note: --resume: no unfinished output of an earlier run for %s; merging "
                  "from the start" % out in r.stderr, r.stderr)
    check_identical(out, ref)
    print("nothing to resume: a note, then a normal run")


CASES = {"kills": case_kills, "damage": case_damage, "refuse": case_refuse, "nothing": case_nothing}

if __name__ == "__main__":
    runner.main_cases(CASES)
