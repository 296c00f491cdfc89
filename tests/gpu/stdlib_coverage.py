#!/usr/bin/env python3
"""Which public stdlib methods (`def name(` at the start of a line in stdlib/*.merge, names not
starting with `_`) no GPU recipe (tests/gpu/recipes/*.merge) calls. The GPU bundle can only
check on a device what its recipes use, so a new method needs a line in one of them.

  stdlib_coverage.py [--root REPO] [--warn]

Prints `stdlib coverage: N methods, all in a GPU recipe` and exits 0, or names each missing
method and exits 1 (with --warn: prints them as gpu-check.sh's warnings and exits 0)."""
import argparse
import glob
import os
import re
import sys


def public_methods(root):
    names = []
    for path in sorted(glob.glob(os.path.join(root, "stdlib", "*.merge"))):
        with open(path) as f:
            names += re.findall(r"^def ([a-z][a-z_0-9]*)\s*\(", f.read(), flags=re.M)
    return names


def called(root):
    text = ""
    for path in sorted(glob.glob(os.path.join(root, "tests", "gpu", "recipes", "*.merge"))):
        with open(path) as f:
            # comments name methods too; only the recipe's code counts
            text += "\n".join(line.split("#", 1)[0] for line in f) + "\n"
    return text


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(here)))
    ap.add_argument("--warn", action="store_true")
    args = ap.parse_args()
    methods = public_methods(args.root)
    if not methods:
        print("stdlib coverage: no methods found under %s/stdlib" % args.root)
        return 1
    code = called(args.root)
    missing = [m for m in methods if not re.search(r"\b%s\s*\(" % re.escape(m), code)]
    for m in missing:
        if args.warn:
            print("gpu-check: WARNING: stdlib method %s is used by no tests/gpu/recipes/*.merge" % m,
                  file=sys.stderr)
        else:
            print("stdlib coverage: %s is called by no tests/gpu/recipes/*.merge" % m)
    if not missing:
        print("stdlib coverage: %d methods, all in a GPU recipe" % len(methods))
    return 0 if args.warn or not missing else 1


if __name__ == "__main__":
    sys.exit(main())
