"""Prints a pathological recipe for the limit tests: python3 pathological.py CASE.

Each recipe is far past one limit of compiler/include/mergec/Frontend/Limits.h and was a crash
(stack overflow), a hang or tens of GB before the limit existed."""
import sys

HEAD = 'model base = "b"\n'


def recipe(case):
    if case == "parens":  # 100,000 nested parentheses: ANTLR's parser overflowed its stack
        return HEAD + "merge " + "(" * 100000 + "base" + ")" * 100000 + "\n"
    if case == "unclosed-parens":  # 20,000 '(' never closed: the same, inside error recovery
        return HEAD + "merge " + "(" * 20000 + "base\n"
    if case == "unclosed-brackets":
        return HEAD + "merge sum(" + "[" * 20000 + "base\n"
    if case == "unary-minus":
        return HEAD + "merge " + "-" * 100000 + "base\n"
    if case == "chain":  # 150,000 operators in a row: parsed in a loop, but a 150,000-deep tree
        return HEAD + "merge base" + "+base" * 150000 + "\n"
    if case == "depth":  # 200 calls around 900 operators: each under its own limit
        return HEAD + "merge " + "abs(" * 200 + "base" + " + base" * 900 + ")" * 200 + "\n"
    if case == "at-limits":  # 256 levels of parentheses, 1000 operators in a row: compiles
        return (HEAD + "def chain(x) = x" + " * 1.5" * 1000 + "\n" +
                "merge chain(" + "(" * 255 + "base" + ")" * 255 + ")\n")
    if case == "eval-depth":  # 3,000 defs, each calling the next: Sema's recursion
        defs = "".join("def g%d(x) = g%d(x) + 1\n" % (i, i + 1) for i in range(3000))
        return HEAD + defs + "def g3000(x) = x\nmerge g0(base)\n"
    if case == "long-list":
        return HEAD + "merge sum([" + ", ".join(["base"] * 20000) + "])\n"
    if case == "arguments":
        return HEAD + "merge base * ramp(" + ", ".join(["1"] * 2000) + ")\n"
    if case == "parameters":
        params = ", ".join("p%d" % i for i in range(2000))
        return HEAD + "def f(" + params + ") = p0\nmerge f(base)\n"
    if case == "rules":
        rules = "".join('  "r%d" => base\n' % i for i in range(1100))
        return HEAD + "merge {\n" + rules + "}\n"
    if case == "patterns":
        patterns = " | ".join('"p%d"' % i for i in range(5000))
        return HEAD + "merge {\n  " + patterns + " => base\n  _ => base\n}\n"
    if case == "median":  # a median of k is a k x k sorting network: 400 items, 160,000 ops
        return HEAD + "merge median([" + ", ".join("base * %d" % i for i in range(400)) + "])\n"
    if case == "list-bomb":  # 2^29 calls of a def that builds a 9,000-item list for len()
        lst = "[" + ", ".join(["x"] * 9000) + "]"
        defs = "def f0(x) = len(%s)\n" % lst + "".join(
            "def f%d(x) = f%d(x) + f%d(x)\n" % (i, i - 1, i - 1) for i in range(1, 30))
        return HEAD + defs + "merge base * f29(1)\n"
    if case == "huge-file":  # 2 MB of comments: refused before it is read
        return HEAD + ("# " + "x" * 97 + "\n") * 20000 + "merge base\n"
    raise SystemExit("unknown case " + case)


sys.stdout.write(recipe(sys.argv[1]))
