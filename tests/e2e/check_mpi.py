"""`mpirun -np N mergec run` (docs/cli.md, "Several processes and machines (MPI)").

  --case identical  a recipe with model-scope methods (TIES' global threshold, a global top-k
                    band with its tie quotas, a model-wide norm: a model-scope sum), a random one
                    (dare_ties) and copies, merged into several shards by 2 and 3 processes: every
                    file of the output (shards, index, side files, manifest, model card) is
                    byte-identical to a single process's; a single-shard output too (one rank
                    works); --verbose says what each rank writes
  --case fail       a rank that fails (MERGEC_TEST_FAIL_RANK, after writing its shards; rank 1,
                    then rank 0): every rank exits 1, the failing one says why, nothing at OUT and
                    no temporary left; --resume is refused under mpirun

The processes run on this machine (--oversubscribe: more ranks than cores)."""
import os
import shutil
import subprocess

import models
import runner

SHAPE = dict(num_layers=6, hidden=64, intermediate=128, vocab=256)
RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    model b    = "models/b"
    merge {
      "*.mlp.*" => base + ties([tv(a), tv(b)], density = 0.3, scope = model)
      "*.self_attn.o_proj.*" => base + tv(a) * topk_mask(tv(b), 0.3, skip = 0.05, scope = model)
      "*.self_attn.*" => base + dare_ties([tv(a), tv(b)], density = 0.5, seed = 7)
      "*.input_layernorm.*" => base
      "*norm*" => base + tv(a) * (norm(tv(b), scope = model) / norm(tv(b)))
      _ => base + 0.5 * tv(a)
    }
    """
SHARD = "40KB"


def setup(work):
    base = models.make_llama(os.path.join(work, "models", "base"), "BF16", 1, **SHAPE)
    for seed, name in ((2, "a"), (3, "b")):
        models.make_llama(os.path.join(work, "models", name), "BF16", seed, base=base, **SHAPE)
    os.environ["MERGEC_CACHE_DIR"] = os.path.join(work, "cache")
    return runner.write_recipe(os.path.join(work, "r.merge"), RECIPE)


def mpirun(n, args, work, env=None, timeout=300):
    cmd = [shutil.which("mpirun") or "mpirun", "-np", str(n), "--oversubscribe"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    environment = dict(os.environ, **(env or {}))
    exported = ["MERGEC_CACHE_DIR"] + sorted(env or {})
    if "ASAN_OPTIONS" in environment:
        # Under the sanitizer build (scripts/test.sh --sanitize): Open MPI's own allocations
        # (MPI_Init, its plugins, hwloc) are still held at exit, which LeakSanitizer reports as
        # leaks of mergec. Leak checking stays on in every test that does not start MPI.
        environment["ASAN_OPTIONS"] += ":detect_leaks=0"
        exported.append("ASAN_OPTIONS")
    for name in exported:
        cmd += ["-x", name]
    cmd += [runner.mergec_path()] + [str(a) for a in args]
    try:
        p = subprocess.run(cmd, cwd=work, env=environment, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise runner.TestFailure("timed out after %ds: %s" % (timeout, " ".join(cmd)))
    return runner.Result(cmd, p.returncode, p.stdout.decode("utf-8", "replace"),
                         p.stderr.decode("utf-8", "replace"))


def files(out):
    return {f: open(os.path.join(out, f), "rb").read() for f in sorted(os.listdir(out))}


def same(ref, out, what):
    a, b = files(ref), files(out)
    runner.expect(sorted(a) == sorted(b), "%s: files differ: %s vs %s" % (what, sorted(a), sorted(b)))
    for name in a:
        runner.expect(a[name] == b[name], "%s: %s differs from the single process's" % (what, name))
    return len(a)


def case_identical(work):
    recipe = setup(work)
    for shard, tag in ((SHARD, "sharded"), ("1GB", "one shard")):
        ref = os.path.join(work, "ref-" + tag.replace(" ", "-"))
        runner.run_mergec(["run", recipe, "-o", ref, "--shard-size", shard, "--quiet"], cwd=work,
                          echo=False)
        shards = [f for f in os.listdir(ref) if f.endswith(".safetensors")]
        runner.expect(len(shards) >= 6 if shard == SHARD else len(shards) == 1,
                      "unexpected shards: %s" % shards)
        for n in (2, 3):
            out = os.path.join(work, "out-%s-%d" % (tag.replace(" ", "-"), n))
            r = mpirun(n, ["run", recipe, "-o", out, "--shard-size", shard, "--verbose"], work)
            runner.expect(r.rc == 0, "mpirun -np %d failed\n%s" % (n, r.describe()))
            for rank in range(n):
                runner.expect("rank %d/%d: writes " % (rank, n) in r.stderr,
                              "no 'rank %d/%d: writes' line\n%s" % (rank, n, r.describe()))
            count = same(ref, out, "-np %d, %s" % (n, tag))
            print("%s, -np %d: %d shards, %d files byte-identical to one process" %
                  (tag, n, len(shards), count))


def case_fail(work):
    recipe = setup(work)
    for n, rank in ((3, 1), (2, 0)):
        out = os.path.join(work, "out-fail-%d" % rank)
        r = mpirun(n, ["run", recipe, "-o", out, "--shard-size", SHARD, "--quiet"], work,
                   env={"MERGEC_TEST_FAIL_RANK": str(rank)})
        runner.expect(r.rc == 1, "expected exit status 1\n%s" % r.describe())
        runner.expect("mergec: error: rank %d/%d: test hook: MERGEC_TEST_FAIL_RANK=%d" %
                      (rank, n, rank) in r.stderr, "no error from the failing rank\n%s" % r.describe())
        if rank != 0:
            runner.expect("mergec: error: rank 0/%d: another rank failed" % n in r.stderr,
                          "rank 0 does not say that another rank failed\n%s" % r.describe())
        runner.assert_no_output(out)
        print("rank %d of %d fails: exit 1, nothing at OUT, no temporary left" % (rank, n))
    out = os.path.join(work, "out-resume")
    r = mpirun(2, ["run", recipe, "-o", out, "--resume", "--quiet"], work)
    runner.expect(r.rc == 1 and "--resume is not supported with several processes" in r.stderr,
                  "--resume under mpirun not refused\n%s" % r.describe())
    runner.assert_no_output(out)
    print("--resume under mpirun: refused")


if __name__ == "__main__":
    runner.main_cases({"identical": case_identical, "fail": case_fail})
