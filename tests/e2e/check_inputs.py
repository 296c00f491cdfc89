"""Inputs that are not regular files, nested too deeply, or change while mergec reads them: exit
status 1, one `mergec: error:` line naming the file, nothing left at the output path, and no
hang (every run has a 60 s timeout; each takes well under a second).

  --case fifo-shard     a shard of a sharded model is a FIFO (open(2) blocked forever on it)
  --case fifo-config    the base model's config.json is a FIFO
  --case deep-config    config.json nests 100,000 arrays
  --case truncated      a model file is truncated after planning, before the merge reads it
  --case rewritten      a model file is rewritten in place (same size) after planning

The script asserts all of that itself, then prints mergec's stderr after a `stderr:` line so
that the .test can FileCheck the message."""
import os
import subprocess

import models
import runner

CASES = ["fifo-shard", "fifo-config", "deep-config", "truncated", "rewritten"]

RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    merge base + 0.5 * tv(a)
    """


def run_changing(cli, work, change):
    """Runs mergec with the MERGEC_TEST_WAIT_FOR hook: once mergec has planned and waits, calls
    change(), then lets it go on. Returns (exit status, stderr)."""
    go = os.path.join(work, "go")
    env = dict(os.environ, MERGEC_TEST_WAIT_FOR=go)
    p = subprocess.Popen([runner.mergec_path()] + cli, cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = p.stderr.readline()
    runner.expect("test hook: waiting for" in first, "mergec did not reach the hook: %r" % first)
    change()
    with open(go, "w"):
        pass
    try:
        rest = p.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        p.kill()
        raise runner.TestFailure("mergec hung after the input changed")
    return p.returncode, rest


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    case = args.case
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=80,
                             shards=3 if case == "fifo-shard" else 1)
    models.make_llama(os.path.join(mdir, "a"), "bf16", seed=81, base=base)
    recipe = runner.write_recipe(os.path.join(work, "inputs.merge"), RECIPE)
    out = os.path.join(work, "out")
    cli = ["run", recipe, "-o", out, "--quiet"]
    model_file = os.path.join(mdir, "a", "model.safetensors")

    if case == "fifo-shard":
        bad = os.path.join(mdir, "base", "model-00002-of-00003.safetensors")
        os.remove(bad)
        os.mkfifo(bad)
    elif case == "fifo-config":
        bad = os.path.join(mdir, "base", "config.json")
        os.remove(bad)
        os.mkfifo(bad)
    elif case == "deep-config":
        bad = os.path.join(mdir, "base", "config.json")
        with open(bad, "w") as f:
            f.write('{"num_hidden_layers": 2, "x": ' + "[" * 100000 + "]" * 100000 + "}")

    if case in ("truncated", "rewritten"):
        size = os.path.getsize(model_file)

        def change():
            if case == "truncated":
                os.truncate(model_file, size // 2)
            else:
                with open(model_file, "r+b") as f:
                    f.seek(size - 4)
                    f.write(b"\x7f\x7f\x7f\x7f")
                st = os.stat(model_file)  # a later time than any clock granularity could hide
                os.utime(model_file, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))

        status, stderr = run_changing(cli, work, change)
        stderr = "\n".join(l for l in stderr.splitlines() if "test hook" not in l) + "\n"
    else:
        r = runner.run_mergec(cli, expect=None, cwd=work, timeout=60)
        status, stderr = r.rc, r.stderr

    print("stderr:")
    print(stderr, end="" if stderr.endswith("\n") else "\n")
    runner.expect(status == 1, "expected exit status 1, got %d" % status)
    errors = [l for l in stderr.splitlines() if l.startswith("mergec: error: ")]
    runner.expect(len(errors) == 1, "expected one error line: %r" % stderr)
    runner.assert_no_output(out)
    print("no output left at %s" % out)


def add_args(p):
    p.add_argument("--case", required=True, choices=CASES)


if __name__ == "__main__":
    runner.main(body, add_args)
