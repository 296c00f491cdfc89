#!/usr/bin/env python3
"""Compares two merged model directories tensor by tensor.

  compare.py A B [--json FILE] [--label NAME] [--top 8]

For every tensor: identical bytes or not; where not (float dtypes), the number of differing
elements and the largest distance in units in the last place of the stored dtype (BF16, F16,
F32), measured by the integer order of the bit patterns (+0 and -0 are 0 apart; NaN against
NaN counts as equal when both are NaN, NaN against a number is reported as a NaN mismatch).
Also a histogram of the distances (1, 2, 3-4, 5-16, 17-256, >256 ulp). Tensor sets, dtypes and
shapes must match. Big tensors are compared in chunks (memory stays at a few hundred MB).

Prints a human summary; --json writes the full result. Exit status: 0 when every tensor is
byte-identical, 1 when some differ, 2 when the two outputs cannot be compared (missing
tensors, a shape or dtype mismatch, unreadable files).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stio  # noqa: E402

CHUNK = 1 << 24  # elements
BUCKETS = ((1, 1), (2, 2), (3, 4), (5, 16), (17, 256), (257, None))


def bucket_name(lo, hi):
    return ("%d" % lo if hi == lo else "%d-%d" % (lo, hi)) if hi is not None else ">%d" % (lo - 1)


def ordered(dtype, bits):
    sign, mag, _, _ = stio.FLOAT_BITS[dtype]
    m = (bits & np.array(mag, dtype=bits.dtype)).astype(np.int64)
    return np.where((bits & np.array(sign, dtype=bits.dtype)) != 0, -m, m)


def is_nan(dtype, bits):
    _, _, exp, frac = stio.FLOAT_BITS[dtype]
    e = np.array(exp, dtype=bits.dtype)
    return ((bits & e) == e) & ((bits & np.array(frac, dtype=bits.dtype)) != 0)


def compare_tensor(dtype, a, b):
    """a, b: stored element arrays (unsigned bit patterns for floats). Returns a dict."""
    n = int(a.size)
    res = {"elements": n, "identical": True, "differing": 0, "max_ulp": 0, "nan_mismatch": 0,
           "hist": [0] * len(BUCKETS)}
    for s in range(0, n, CHUNK):
        x, y = a[s:s + CHUNK], b[s:s + CHUNK]
        if np.array_equal(x, y):
            continue
        res["identical"] = False
        if dtype not in stio.FLOAT_BITS:
            res["differing"] += int(np.count_nonzero(x != y))
            res["max_ulp"] = None
            continue
        nx, ny = is_nan(dtype, x), is_nan(dtype, y)
        both_nan = nx & ny
        diff = (x != y) & ~both_nan
        dist = np.abs(ordered(dtype, x) - ordered(dtype, y))
        dist[both_nan | (nx != ny)] = 0
        res["nan_mismatch"] += int(np.count_nonzero(nx != ny))
        res["differing"] += int(np.count_nonzero(diff))  # incl. +0/-0 (0 ulp) and NaN mismatches
        if dist.size:
            m = int(dist.max())
            if res["max_ulp"] is not None:
                res["max_ulp"] = max(res["max_ulp"], m)
        for i, (lo, hi) in enumerate(BUCKETS):
            sel = dist >= lo if hi is None else (dist >= lo) & (dist <= hi)
            res["hist"][i] += int(np.count_nonzero(sel))
    return res


def compare_dirs(dir_a, dir_b):
    out = {"a": dir_a, "b": dir_b, "errors": [], "tensors": {}}
    try:
        ma, mb = stio.Model(dir_a), stio.Model(dir_b)
    except Exception as e:  # noqa: BLE001 - reported, not raised
        out["errors"].append("cannot read: %s" % e)
        return out
    names_a, names_b = list(ma.entries), list(mb.entries)
    if not names_a:
        out["errors"].append("%s: no tensors" % dir_a)
    missing, extra = sorted(set(names_a) - set(names_b)), sorted(set(names_b) - set(names_a))
    if missing:
        out["errors"].append("only in A: %s" % ", ".join(missing[:5]))
    if extra:
        out["errors"].append("only in B: %s" % ", ".join(extra[:5]))
    for name in names_a:
        if name not in mb.entries:
            continue
        da, sa = ma.entries[name][:2]
        db, sb = mb.entries[name][:2]
        if (da, sa) != (db, sb):
            out["errors"].append("%s: %s %s vs %s %s" % (name, da, list(sa), db, list(sb)))
            continue
        out["tensors"][name] = dict(compare_tensor(da, ma.array(name), mb.array(name)), dtype=da)
    ma.close()
    mb.close()
    return out


def summarize(res, label="", top=8):
    t = res["tensors"]
    diff = {k: v for k, v in t.items() if not v["identical"]}
    n_el = sum(v["elements"] for v in t.values())
    n_diff = sum(v["differing"] for v in diff.values())
    ulps = [v["max_ulp"] for v in diff.values()]
    max_ulp = None if any(u is None for u in ulps) else max(ulps, default=0)
    hist = [sum(v["hist"][i] for v in diff.values()) for i in range(len(BUCKETS))]
    s = {"label": label, "tensors": len(t), "identical_tensors": len(t) - len(diff),
         "elements": n_el, "differing_elements": n_diff, "max_ulp": max_ulp,
         "nan_mismatch": sum(v["nan_mismatch"] for v in diff.values()),
         "hist": {bucket_name(*b): h for b, h in zip(BUCKETS, hist) if h},
         "identical": not diff and not res["errors"] and bool(t), "errors": res["errors"],
         "worst": sorted(({"tensor": k, "max_ulp": v["max_ulp"], "differing": v["differing"],
                           "elements": v["elements"]} for k, v in diff.items()),
                         key=lambda w: (-(w["max_ulp"] if w["max_ulp"] is not None else 1 << 62),
                                        -w["differing"]))[:top]}
    return s


def human(s):
    head = (s["label"] + ": ") if s["label"] else ""
    if s["errors"]:
        return head + "NOT COMPARABLE: " + "; ".join(s["errors"][:5])
    if s["identical"]:
        return head + "byte-identical (%d tensors, %d elements)" % (s["tensors"], s["elements"])
    lines = [head + "%d/%d tensors differ; %d/%d elements differ (%.3g%%), max %s ulp%s; ulp histogram %s" % (
        s["tensors"] - s["identical_tensors"], s["tensors"], s["differing_elements"], s["elements"],
        100.0 * s["differing_elements"] / max(1, s["elements"]), s["max_ulp"],
        (", %d NaN mismatches" % s["nan_mismatch"]) if s["nan_mismatch"] else "",
        " ".join("%s:%d" % kv for kv in s["hist"].items()))]
    for w in s["worst"]:
        lines.append("    %-52s max %s ulp, %d/%d elements" % (w["tensor"], w["max_ulp"], w["differing"],
                                                               w["elements"]))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--json", help="write the per-tensor result here")
    ap.add_argument("--label", default="")
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args(argv)
    res = compare_dirs(args.a, args.b)
    s = summarize(res, args.label, args.top)
    print(human(s))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": s, "tensors": res["tensors"]}, f, indent=1)
    if s["errors"]:
        return 2
    return 0 if s["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
