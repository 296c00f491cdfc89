"""Tensors larger than the host's output window (4 Mi elements): their map phase streams window
by window, and the bytes are those a whole-tensor run computes.

  --case methods  the embeddings (2.5 windows, ties: selections over the whole tensor, then the
                  windowed map), lm_head (dare_linear without rescaling: one map phase, inputs
                  released per window, Philox keyed by the absolute element index) and the
                  small tensors (task arithmetic, one window each): --threads 1 and 2
                  byte-identical, every tensor against the numpy reference, the --verbose
                  memory estimate counting windows rather than whole tensors
  --case resume   killed (SIGKILL) after the first window of a multi-window tensor reached the
                  shard and before the tensor was journalled: --resume redoes that tensor from
                  its start, the output byte-identical to an uninterrupted run"""
import glob
import hashlib
import os
import re
import signal
import subprocess
import time

import numpy as np

import compare
import models
import ref_methods as R
import runner
import st

F = np.float32
WINDOW = 64 * 65536  # elements: the executor's kWindowElements
# vocab x hidden = 10,547,200 elements: two full windows and a third ending inside a chunk.
SHAPE = dict(num_layers=1, hidden=512, intermediate=128, vocab=20600)

RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    model b    = "models/b"
    param lam  = 0.6
    merge {
      "model.embed_tokens.weight" => base + ties([tv(a), tv(b)], density = 0.3)
      "lm_head.weight"            => base + dare_linear([tv(a), tv(b)], density = 0.7, rescale = false, seed = 5)
      _                           => base + lam * (tv(a) + tv(b)) / 2
    }
    """


def reference(name, base, a, b):
    tvs = [a[name] - base[name], b[name] - base[name]]
    if name == "model.embed_tokens.weight":
        return base[name] + R.ties(tvs, density=0.3)
    if name == "lm_head.weight":
        return base[name] + R.dare_linear(tvs, density=0.7, rescale=False, seed=5, name=name)
    return base[name] + F(0.6) * (tvs[0] + tvs[1]) / F(2)


def setup(work):
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", 70, **SHAPE)
    a = models.make_llama(os.path.join(mdir, "a"), "bf16", 71, base=base, **SHAPE)
    b = models.make_llama(os.path.join(mdir, "b"), "bf16", 72, base=base, **SHAPE)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        runner.expect(base[name].size > 2 * WINDOW and base[name].size % 65536,
                      "%s: %d elements, not the 2.5 windows meant" % (name, base[name].size))
    os.environ["MERGEC_CACHE_DIR"] = os.path.join(work, "cache")
    return base, a, b, runner.write_recipe(os.path.join(work, "r.merge"), RECIPE)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def case_methods(work):
    base, a, b, recipe = setup(work)
    outs = runner.run_threads_identical(recipe, work, ["1", "2"], "multi-window outputs")
    print("--threads 1 and 2: byte-identical")
    actual = st.read_model(outs["1"])
    runner.expect(list(actual) == list(base), "tensor order %s" % list(actual))
    for name in base:
        dtype, arr = actual[name]
        want = reference(name, base, a, b)
        if name == "model.embed_tokens.weight":
            # Selections: an element at the top-k boundary may fall on the other side in f32.
            k, exact, total = compare.compare(dtype, arr, want)
            runner.expect(exact >= total * 0.9995, "%s: %d of %d bit-exact" % (name, exact, total))
            print("tensor %s: bit-exact %d/%d" % (name, exact, total))
        else:
            compare.assert_tensor(name, dtype, arr, want, max_ulp=1, expected_dtype="BF16")
    r = runner.run_mergec(["run", recipe, "-o", os.path.join(work, "verbose"), "--quiet",
                           "--verbose"], echo=False)
    line = [l for l in r.stderr.splitlines() if l.startswith("memory: about")][0]
    print(re.sub(r"mergec itself [^,]*, ", "mergec itself ..., ", line))
    runner.expect(digest(os.path.join(work, "verbose", "model.safetensors")) ==
                  digest(os.path.join(outs["1"], "model.safetensors")), "--verbose run differs")


def temps(out):
    parent, name = os.path.split(os.path.abspath(out))
    return glob.glob(os.path.join(parent, "." + name + ".mergec-tmp-*"))


def case_resume(work):
    base, a, b, recipe = setup(work)
    ref = os.path.join(work, "ref")
    runner.run_mergec(["run", recipe, "-o", ref, "--quiet"], echo=False)
    header, _, data_start = st.read_header(os.path.join(ref, "model.safetensors"))
    order = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    target = "lm_head.weight"
    begin, end = (data_start + o for o in header[target]["data_offsets"])
    index = order.index(target)
    # The writer pauses after each piece it writes (MERGEC_TEST_DELAY_US): the kill lands once
    # the tensor's first window is in the shard and the tensor is not journalled.
    out = os.path.join(work, "out")
    env = dict(os.environ, MERGEC_TEST_DELAY_US="150000")
    p = subprocess.Popen([runner.mergec_path(), "run", recipe, "-o", out, "--threads", "1",
                          "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    size, deadline = 0, time.time() + 60
    try:
        while time.time() < deadline:
            runner.expect(p.poll() is None, "the run finished before it was killed")
            shards = [os.path.join(t, "model.safetensors") for t in temps(out)]
            size = max([os.path.getsize(s) for s in shards if os.path.exists(s)] + [0])
            if size >= begin + WINDOW * 2:
                break
            time.sleep(0.002)
        else:
            raise runner.TestFailure("the kill point never came")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    (tmp,) = temps(out)
    with open(os.path.join(tmp, "mergec-journal"), "rb") as f:
        entries = f.read().count(b"\n") - 1
    runner.expect(begin < size < end and entries == index,
                  "killed with %d bytes written (the tensor spans %d..%d) and %d tensors journalled"
                  " (the tensor is number %d)" % (size, begin, end, entries, index))
    print("killed inside '%s' (%d of its %d bytes written), %d tensors journalled" % (
        target, size - begin, end - begin, entries))
    r = runner.run_mergec(["run", recipe, "-o", out, "--resume"], echo=False)
    line = [l for l in r.stderr.splitlines() if l.startswith("mergec: resuming:")]
    runner.expect(len(line) == 1, r.stderr)
    print(re.sub(r"\(.* re-read in [0-9]+ ms\)", "(...)", line[0]))
    for f in sorted(os.listdir(ref)):
        if f != "mergec-manifest.json":
            runner.expect(digest(os.path.join(out, f)) == digest(os.path.join(ref, f)), f + " differs")
    print("resumed: identical")


if __name__ == "__main__":
    runner.main_cases({"methods": case_methods, "resume": case_resume})
