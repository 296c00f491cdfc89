#!/usr/bin/env python3
"""Row phases of large tensors computed window by window (PhaseRunner's RowWindows): a tensor
whose row buffers (ranks, row sums) would exceed the budget gets window-sized buffers, and the
phases reading them recompute the rows of each window. The output must be the bytes of the
whole-tensor computation (MERGEC_TEST_ROW_BUFFER_BUDGET raised so nothing is windowed), for 1
and 2 threads, for DELLA (row ranks read by a reduction and the map phase) and for ranks with
row sums (a value per row, whole in windows too: one of the ranks, one reading ranks, so it is
recomputed with each window's rows); the memory estimate counts the windows. model_stock
filter_wise (six row sums, a value per row) is not windowed at all."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import models  # noqa: E402
from runner import expect, fresh_dir, main, run_mergec, run_threads_identical, write_recipe  # noqa: E402

# embed_tokens and lm_head of 12288 x 512 = 6.3M elements: three rank buffers (75 MB) exceed
# the 64 MiB budget; the layers' small matrices stay whole.
SHAPE = dict(num_layers=1, hidden=512, intermediate=1024, vocab=12288)


def body(args):
    work = os.path.realpath(fresh_dir(args.work))
    base = models.make_llama(os.path.join(work, "base"), "bf16", 1, **SHAPE)
    for i in (1, 2, 3):
        models.make_llama(os.path.join(work, "ft%d" % i), "bf16", 1 + i, base=base, noise=0.01,
                          **SHAPE)
    recipe = os.path.join(work, "rows.merge")
    write_recipe(recipe, "\n".join(
        ['model %s = "%s"' % (m, os.path.join(work, m)) for m in ("base", "ft1", "ft2", "ft3")] +
        ["merge {",
         '  "lm_head.weight" => base + 1e-4 * (row_rank(tv(ft1)) + row_rank(tv(ft2)) + '
         'row_rank(tv(ft3))) * total(tv(ft1) * tv(ft2), scope = row) / '
         '(1 + abs(total(row_rank(tv(ft1)) * tv(ft3), scope = row)))',
         '  "model.embed_tokens.weight" => model_stock(base, [ft1, ft2, ft3], filter_wise = true)',
         "  _ => base + della([tv(ft1), tv(ft2), tv(ft3)], density = 0.4, epsilon = 0.2)",
         "}", ""]))
    p = run_mergec(["run", recipe, "-o", os.path.join(work, "probe"), "--verbose", "--threads", "1"],
                   echo=False)
    memory = re.search(r"memory: about .*", p.stderr)
    expect(memory, "no memory line in --verbose")
    # The largest: lm_head's 3 rank buffers + keys of 32 chunks + 2 (rows + chunk) elements
    # each, its 2 row sums' 12288 values each and the per-thread chunks (34.6 MiB), not
    # 6 x 6.3M elements (144 MiB).
    scratch = re.search(r"([0-9.]+ MiB) of selection and row scratch for '([^']+)'", memory.group(0))
    expect(scratch, "no row scratch in: " + memory.group(0))
    print("row scratch: %s for %s" % (scratch.group(1), scratch.group(2)))
    os.makedirs(os.path.join(work, "w"))
    os.makedirs(os.path.join(work, "t"))
    windowed = run_threads_identical(recipe, os.path.join(work, "w"), ["1", "2"],
                                     "windowed rows")
    os.environ["MERGEC_TEST_ROW_BUFFER_BUDGET"] = str(1 << 40)
    whole = run_threads_identical(recipe, os.path.join(work, "t"), ["2"], "whole-tensor rows")
    del os.environ["MERGEC_TEST_ROW_BUFFER_BUDGET"]
    with open(os.path.join(windowed["1"], "model.safetensors"), "rb") as a, \
            open(os.path.join(whole["2"], "model.safetensors"), "rb") as b:
        expect(a.read() == b.read(), "windowed and whole-tensor rows differ")
    print("windowed rows (threads 1, 2) and whole-tensor rows: byte-identical")


if __name__ == "__main__":
    main(body)
