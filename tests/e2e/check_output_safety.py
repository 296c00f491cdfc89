"""Nothing the user owns is ever destroyed (issue 16, section 1).

  --case overlap      -o that is, contains or lies inside a model, the recipe or the directory
                      holding them (through `..` and symlinks too) is refused before any work,
                      with --force as well; every input stays byte for byte as it was
  --case force        --force replaces mergec's own output only: a user's directory, a file and
                      a directory with a foreign manifest are refused and left as they were
  --case compile      `compile -o` never writes over the recipe or into a model; a failed write
                      (full disk) leaves the old file and no temporary
  --case side-files   side files: regular files keep their permission bits; a link leading out
                      of the model directory, a FIFO and a dangling link are skipped with a
                      warning (and nothing blocks)
  --case signals      SIGINT, SIGTERM and SIGHUP mid-merge: exit 128+signal, no output, no
                      temporary, no lock file; the next run completes
  --case concurrent   a second run for the same output refuses at its start while the first is
                      still writing; the first then completes"""
import glob
import hashlib
import os
import resource
import signal
import stat
import subprocess
import time

import models
import runner

RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    merge base + 0.5 * tv(a)
    """


def make_models(work, hidden=64, intermediate=128, vocab=256, layers=2):
    base = models.make_llama(os.path.join(work, "models", "base"), "BF16", 1, num_layers=layers,
                             hidden=hidden, intermediate=intermediate, vocab=vocab)
    models.make_llama(os.path.join(work, "models", "a"), "BF16", 2, num_layers=layers,
                      hidden=hidden, intermediate=intermediate, vocab=vocab, base=base)
    return runner.write_recipe(os.path.join(work, "r.merge"), RECIPE)


def tree_digest(root):
    """Every path under `root` with its type, mode and content: any change shows."""
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files) + dirs:
            p = os.path.join(d, name)
            s = os.lstat(p)
            h.update(("%s %o\n" % (os.path.relpath(p, root), s.st_mode)).encode())
            if stat.S_ISREG(s.st_mode):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def leftovers(out):
    parent, name = os.path.split(os.path.abspath(out))
    return glob.glob(os.path.join(parent, "." + name + ".mergec-*"))


def case_overlap(work):
    recipe = make_models(work)
    before = tree_digest(work)
    os.symlink(os.path.join(work, "models", "base"), os.path.join(work, "link-to-base"))
    cases = [
        ("models/base", "is model 'base'"),
        ("models/base/", "is model 'base'"),
        ("models/a/../base", "is model 'base'"),
        ("link-to-base", "is model 'base'"),
        ("models", "contains model 'base'"),
        (".", None),  # not a usable name, refused all the same
        (work, "contains model 'base'"),
        ("models/base/merged", "lies inside model 'base'"),
        ("link-to-base/merged", "lies inside model 'base'"),
        ("r.merge", "is the recipe"),
    ]
    for out, relation in cases:
        for force in ([], ["--force"]):
            r = runner.run_mergec(["run", recipe, "-o", out, "--quiet"] + force, expect=1, cwd=work)
            if relation:
                runner.expect("the output " + relation in r.stderr and
                              "mergec never writes over or removes its inputs" in r.stderr, r.stderr)
                # Refused before any work: nothing compiled, no model opened.
                runner.expect("jit:" not in r.stderr, r.stderr)
    print(r.stderr.strip())
    os.unlink(os.path.join(work, "link-to-base"))
    runner.expect(tree_digest(work) == before, "an input changed")
    # --model overrides are inputs too.
    r = runner.run_mergec(["run", recipe, "-o", "elsewhere/out", "--model", "a=elsewhere",
                           "--quiet"], expect=1, cwd=work)
    os.makedirs(os.path.join(work, "elsewhere"))
    r = runner.run_mergec(["run", recipe, "-o", "elsewhere/out", "--model", "a=elsewhere",
                           "--quiet"], expect=1, cwd=work)
    runner.expect("the output lies inside model 'a'" in r.stderr, r.stderr)
    # A sibling output is fine.
    runner.run_mergec(["run", recipe, "-o", "models/merged", "--quiet"], cwd=work)
    print("overlap: %d outputs refused with and without --force, inputs unchanged" % (2 * (len(cases))))


def case_force(work):
    recipe = make_models(work)
    user = os.path.join(work, "my-models")
    os.makedirs(user)
    with open(os.path.join(user, "weights.bin"), "wb") as f:
        f.write(b"precious")
    with open(os.path.join(work, "notes.txt"), "w") as f:
        f.write("precious")
    foreign = os.path.join(work, "foreign")
    os.makedirs(foreign)
    with open(os.path.join(foreign, "mergec-manifest.json"), "w") as f:
        f.write('{"made_by": "someone else"}')
    before = tree_digest(work)
    for out, reason in (("my-models", "it has no mergec-manifest.json"),
                        ("notes.txt", "it is not a directory"),
                        ("foreign", "is not one mergec wrote")):
        r = runner.run_mergec(["run", recipe, "-o", out, "--force", "--quiet"], expect=1, cwd=work)
        runner.expect("--force replaces only a directory that mergec wrote" in r.stderr and
                      reason in r.stderr, r.stderr)
        runner.expect(not leftovers(os.path.join(work, out)), "leftovers %s" % leftovers(out))
    print(r.stderr.strip())
    runner.expect(tree_digest(work) == before, "a refused --force changed something")
    runner.run_mergec(["run", recipe, "-o", "merged", "--quiet"], cwd=work)
    runner.run_mergec(["run", recipe, "-o", "merged", "--quiet", "--force"], cwd=work)
    runner.expect(not leftovers(os.path.join(work, "merged")), "leftovers after --force")
    print("force: 3 foreign targets refused and unchanged; mergec's own output replaced")


def case_compile(work):
    recipe = make_models(work)
    with open(recipe, "rb") as f:
        text = f.read()
    for out, relation in (("r.merge", "is the recipe"), ("./models/../r.merge", "is the recipe"),
                          ("models/base/kernels.mlir", "lies inside model 'base'"),
                          ("models/base/model.safetensors", "lies inside model 'base'")):
        r = runner.run_mergec(["compile", recipe, "--emit=merge", "-o", out], expect=1, cwd=work)
        runner.expect("the output " + relation in r.stderr, r.stderr)
    with open(recipe, "rb") as f:
        runner.expect(f.read() == text, "the recipe changed")
    print(r.stderr.strip())
    runner.run_mergec(["compile", recipe, "--emit=merge", "-o", "out.mlir"], cwd=work)
    with open(os.path.join(work, "out.mlir")) as f:
        good = f.read()
    runner.expect("merge." in good, "compile output")
    # A write that fails part-way (a file size limit stands in for a full disk) leaves the old
    # file whole and no temporary beside it.
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
    p = subprocess.run([runner.mergec_path(), "compile", recipe, "--emit=merge", "-o", "out.mlir"],
                       cwd=work, preexec_fn=limit, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runner.expect(p.returncode == 1 and b"mergec: error:" in p.stderr, p.stderr.decode())
    print(p.stderr.decode().strip())
    with open(os.path.join(work, "out.mlir")) as f:
        runner.expect(f.read() == good, "a failed compile -o changed the old file")
    runner.expect(not leftovers(os.path.join(work, "out.mlir")), "temporary left")
    print("compile: inputs refused, a failed write leaves the old file and no temporary")


def case_side_files(work):
    recipe = make_models(work)
    base = os.path.join(work, "models", "base")
    secret = os.path.join(work, "secret.txt")
    with open(secret, "w") as f:
        f.write("do not copy")
    os.chmod(secret, 0o600)
    os.unlink(os.path.join(base, "tokenizer.json"))
    os.symlink(secret, os.path.join(base, "tokenizer.json"))
    os.chmod(os.path.join(base, "tokenizer_config.json"), 0o640)
    os.unlink(os.path.join(base, "generation_config.json"))
    os.mkfifo(os.path.join(base, "generation_config.json"))
    os.symlink(os.path.join(work, "missing"), os.path.join(base, "vocab.json"))
    r = runner.run_mergec(["run", recipe, "-o", "out", "--quiet"], cwd=work, timeout=60)
    print(r.stderr.strip())
    out = os.path.join(work, "out")
    files = sorted(os.listdir(out))
    runner.expect("tokenizer.json" not in files and "generation_config.json" not in files and
                  "vocab.json" not in files, "skipped files were copied: %s" % files)
    runner.expect("it links to %s, outside the model directory" % os.path.realpath(secret) in r.stderr,
                  r.stderr)
    runner.expect(r.stderr.count("mergec: warning:") == 3, r.stderr)
    mode = stat.S_IMODE(os.stat(os.path.join(out, "tokenizer_config.json")).st_mode)
    runner.expect(mode == 0o640, "tokenizer_config.json mode %o" % mode)
    print("side files: 3 skipped with a warning, permissions kept (%o)" % mode)


def start(recipe, out, work):
    return subprocess.Popen([runner.mergec_path(), "run", recipe, "-o", out, "--quiet",
                             "--threads", "1"], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def stop_mid_merge(p, out):
    """Waits until `p` writes its temporary output, then stops it there (SIGSTOP), so what
    follows happens mid-merge whatever the machine's speed. False if it finished first."""
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        if any(".mergec-tmp-" in t for t in leftovers(out)):
            p.send_signal(signal.SIGSTOP)
            if any(".mergec-tmp-" in t for t in leftovers(out)):
                return True
            p.send_signal(signal.SIGCONT)  # stopped just after its rename: let it finish
            return False
        time.sleep(0.001)
    return False


def case_signals(work):
    recipe = make_models(work, hidden=512, intermediate=1536, vocab=8192, layers=4)
    out = os.path.join(work, "out")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        for attempt in range(5):
            runner.fresh_dir(out)
            os.rmdir(out)
            p = start(recipe, out, work)
            if not stop_mid_merge(p, out):
                p.wait()
                continue
            p.send_signal(sig)
            p.send_signal(signal.SIGCONT)
            _, err = p.communicate(timeout=60)
            err = err.decode()
            runner.expect(p.returncode == 128 + sig, "%s: exit %d\n%s" % (sig.name, p.returncode, err))
            runner.expect(not leftovers(out), "%s: leftovers %s" % (sig.name, leftovers(out)))
            if os.path.exists(out):
                # Stopped inside the commit: the signal waited for the rename, so the output is
                # whole. Not the case under test; try again.
                runner.expect(os.path.exists(os.path.join(out, "mergec-manifest.json")),
                              "%s: a half-committed output" % sig.name)
                continue
            runner.expect("interrupted by %s; removed the unfinished output" % sig.name in err, err)
            print("%s: exit %d, %s" % (sig.name, p.returncode, "nothing left"))
            break
        else:
            raise runner.TestFailure("%s never landed mid-merge in 5 attempts" % sig.name)
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"], cwd=work)
    runner.expect(not leftovers(out), "leftovers after the completed run")


def case_concurrent(work):
    recipe = make_models(work, hidden=512, intermediate=1536, vocab=8192, layers=4)
    out = os.path.join(work, "out")
    for attempt in range(5):
        first = start(recipe, out, work)
        if stop_mid_merge(first, out):
            break
        first.wait()
        runner.fresh_dir(out)
        os.rmdir(out)
    else:
        raise runner.TestFailure("the merge always finished before it could be stopped")
    try:
        for force in ([], ["--force"]):
            t = time.time()
            r = runner.run_mergec(["run", recipe, "-o", out, "--quiet"] + force, expect=1, cwd=work)
            runner.expect("another mergec run (pid %d) is writing this output" % first.pid in r.stderr,
                          r.stderr)
            runner.expect("jit:" not in r.stderr, "the second run compiled before refusing")
        print(r.stderr.strip().replace(str(first.pid), "PID"))
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    runner.expect(first.returncode == 0, "the first run failed: %s" % err.decode())
    runner.expect(os.path.exists(os.path.join(out, "mergec-manifest.json")), "first run output")
    runner.expect(not leftovers(out), "leftovers %s" % leftovers(out))
    print("concurrent: the second run refused at its start; the first completed")


CASES = {"overlap": case_overlap, "force": case_force, "compile": case_compile,
         "side-files": case_side_files, "signals": case_signals, "concurrent": case_concurrent}


if __name__ == "__main__":
    runner.main_cases(CASES)
