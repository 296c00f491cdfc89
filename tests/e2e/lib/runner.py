"""Running mergec from the end-to-end scripts."""
import argparse
import glob
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))


class TestFailure(AssertionError):
    pass


def mergec_path():
    """$MERGEC (set by lit), else build/bin/mergec of this checkout."""
    path = os.environ.get("MERGEC")
    if not path:
        path = os.path.normpath(os.path.join(_HERE, "..", "..", "..", "build", "bin", "mergec"))
    if not os.path.exists(path):
        raise TestFailure("mergec not found at %s (set MERGEC)" % path)
    return path


class Result:
    def __init__(self, cmd, rc, stdout, stderr):
        self.cmd, self.rc, self.stdout, self.stderr = cmd, rc, stdout, stderr

    def describe(self):
        return "$ %s\nexit status %d\n--- stderr ---\n%s--- stdout ---\n%s" % (
            " ".join(shlex.quote(c) for c in self.cmd), self.rc, self.stderr, self.stdout)


def run_mergec(args, expect=0, cwd=None, timeout=120, echo=True):
    """Runs `mergec ARGS`; raises TestFailure (with the command and its output) unless the exit
    status is `expect` (None: any). Returns a Result."""
    cmd = [mergec_path()] + [str(a) for a in args]
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TestFailure("timed out after %ds: %s" % (timeout, " ".join(cmd)))
    r = Result(cmd, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))
    if echo:
        print("$ mergec " + " ".join(shlex.quote(str(a)) for a in args) + "   -> exit %d" % r.rc)
    if expect is not None and r.rc != expect:
        raise TestFailure("expected exit status %d\n%s" % (expect, r.describe()))
    if r.rc < 0 or "Stack dump" in r.stderr or "LLVM ERROR" in r.stderr:
        raise TestFailure("mergec crashed\n%s" % r.describe())
    return r


def fresh_dir(path):
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    os.makedirs(path)
    return path


def write_recipe(path, text):
    text = textwrap.dedent(text).lstrip("\n")
    with open(path, "w") as f:
        f.write(text)
    return path


def assert_no_output(out):
    """Nothing at OUT, and no leftover .OUT.mergec-tmp-* directory beside it."""
    if os.path.lexists(out):
        raise TestFailure("%s exists after a failed run" % out)
    parent, base = os.path.split(os.path.abspath(out))
    left = glob.glob(os.path.join(parent, "." + base + ".mergec-tmp-*"))
    if left:
        raise TestFailure("temporary output left behind: %s" % left)


# Files mergec may add to an output directory besides the weights and the base's side files.
OPTIONAL_OUTPUT_FILES = ("mergec-manifest.json",)


def output_files(out):
    """The sorted file names of an output directory, less OPTIONAL_OUTPUT_FILES (each of which,
    when present, must be valid JSON) and the model card README.md (which, when present, must
    start with its YAML front matter and name mergec; tests/e2e/model-card.test checks it)."""
    import json
    files = sorted(os.listdir(out))
    if "README.md" in files:
        with open(os.path.join(out, "README.md")) as x:
            card = x.read()
        if not card.startswith("---\nbase_model:\n") or "mergec" not in card:
            raise TestFailure("README.md is not mergec's model card")
        files.remove("README.md")
    for f in OPTIONAL_OUTPUT_FILES:
        if f in files:
            with open(os.path.join(out, f)) as x:
                try:
                    json.load(x)
                except ValueError as e:
                    raise TestFailure("%s is not valid JSON: %s" % (f, e))
    return [f for f in files if f not in OPTIONAL_OUTPUT_FILES]


def run_threads_identical(recipe, work, threads, what):
    """Runs `mergec run recipe` once per thread count (strings) into WORK/outN, requires the
    model.safetensors files to be byte-identical ("WHAT differ across thread counts" otherwise)
    and returns {threads: output directory}."""
    outs, digests = {}, set()
    for t in threads:
        out = outs[t] = os.path.join(work, "out" + t)
        run_mergec(["run", recipe, "-o", out, "--quiet", "--threads", t], echo=False)
        with open(os.path.join(out, "model.safetensors"), "rb") as f:
            digests.add(hashlib.sha256(f.read()).hexdigest())
    expect(len(digests) == 1, "%s differ across thread counts" % what)
    return outs


def expect(cond, message):
    if not cond:
        raise TestFailure(message)


def main(body, add_args=None):
    """Parses --work (and whatever add_args adds), runs body(args); prints PASS or the failure
    and exits 1 on failure."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True, help="scratch directory (recreated)")
    if add_args:
        add_args(parser)
    args = parser.parse_args()
    try:
        body(args)
    except AssertionError as e:  # TestFailure, compare.CompareError
        sys.stdout.flush()
        print("FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
    except Exception:
        sys.stdout.flush()
        traceback.print_exc()
        sys.exit(1)
    print("PASS")


def main_cases(cases):
    """main() for a script of `--case NAME` functions: runs cases[NAME](work), `work` the
    recreated --work directory with its links resolved."""
    def body(args):
        cases[args.case](os.path.realpath(fresh_dir(args.work)))

    def add_args(p):
        p.add_argument("--case", required=True, choices=sorted(cases))

    main(body, add_args)
