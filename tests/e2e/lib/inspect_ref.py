"""numpy references for `mergec inspect` (its statistics, its JSON schema, its PNG), shared by
tests/e2e/check_inspect.py and the Python module's tests."""
import os
import struct
import zlib

import numpy as np

import models
import st

F = np.float32


def make_models(root, hidden=64, intermediate=128, vocab=256):
    """A bf16 base and three fine-tunes whose task vectors correlate: b follows a (cosine near
    0.7), c opposes a (f32 storage, another dtype), and b leaves one tensor equal to the base
    (an all-zero task vector). Returns {name: path}."""
    kw = dict(hidden=hidden, intermediate=intermediate, vocab=vocab)
    paths = {n: os.path.join(root, n) for n in ("base", "a", "b", "c")}
    base = models.make_llama(paths["base"], "bf16", seed=90, **kw)
    a = models.make_llama(paths["a"], "bf16", seed=91, base=base, **kw)
    rng = np.random.default_rng(92)
    b, c = {}, {}
    for name, x in base.items():
        ta = a[name] - x
        noise = rng.standard_normal(x.shape).astype(F) * F(0.02)
        b[name] = ("BF16", st.from_f32("BF16", x + F(0.7) * ta + F(0.7) * noise))
        c[name] = ("F32", (x - F(0.5) * ta + noise).astype(F))
    zero = "model.layers.1.input_layernorm.weight"
    b[zero] = ("BF16", st.from_f32("BF16", base[zero]))
    models.write_model_dir(paths["b"], b, config=models.llama_config(2, hidden, intermediate, vocab, "BF16"))
    models.write_model_dir(paths["c"], c, config=models.llama_config(2, hidden, intermediate, vocab, "F32"))
    return paths


def topk_kept(t, density):
    """Σ t² over the int(density · n) largest magnitudes (ties: lowest flat index first), as
    topk_mask keeps them; f32 products, f64 sum."""
    flat = t.reshape(-1)
    k = int(density * flat.size)
    order = np.lexsort((np.arange(flat.size), -np.abs(flat)))
    kept = flat[order[:k]]
    return float(np.sum((kept * kept).astype(np.float64)))


def raw_sums(base, finetunes, density):
    """Per tensor name: {"sumsq": [..], "kept": [..], "nonzero": [..], and per pair (i, j):
    "dot", "agree", "both"} from f32 task vectors (f32 products summed in f64)."""
    out = {}
    for name, x in base.items():
        tvs = [(m[name] - x).astype(F) for m in finetunes]
        r = {"sumsq": [], "kept": [], "nonzero": [], "pairs": {}, "numel": x.size}
        for t in tvs:
            r["sumsq"].append(float(np.sum((t * t).astype(np.float64))))
            r["kept"].append(topk_kept(t, density))
            r["nonzero"].append(int(np.count_nonzero(t)))
        for i in range(len(tvs)):
            for j in range(i + 1, len(tvs)):
                a, b = tvs[i], tvs[j]
                r["pairs"][(i, j)] = {
                    "dot": float(np.sum((a * b).astype(np.float64))),
                    "agree": int(np.count_nonzero(((a > 0) & (b > 0)) | ((a < 0) & (b < 0)))),
                    "both": int(np.count_nonzero((a != 0) & (b != 0))),
                }
        out[name] = r
    return out


def add_sums(rows):
    total = {"sumsq": None, "kept": None, "nonzero": None, "pairs": {}, "numel": 0}
    for r in rows:
        for key in ("sumsq", "kept", "nonzero"):
            total[key] = list(r[key]) if total[key] is None else [u + v for u, v in zip(total[key], r[key])]
        for p, v in r["pairs"].items():
            acc = total["pairs"].setdefault(p, {"dot": 0.0, "agree": 0, "both": 0})
            for key in acc:
                acc[key] += v[key]
        total["numel"] += r["numel"]
    return total


def statistics(r):
    """The report's statistics from raw sums: None where a denominator is 0."""
    def ratio(n, d):
        return None if d == 0 else n / d
    norms = [float(np.sqrt(s)) for s in r["sumsq"]]
    return {
        "models": [{"norm": norms[m], "nonzero": r["nonzero"][m], "topk_kept": ratio(r["kept"][m], r["sumsq"][m])}
                   for m in range(len(norms))],
        "pairs": {p: {"cosine": ratio(v["dot"], norms[p[0]] * norms[p[1]]),
                      "sign_agreement": ratio(v["agree"], v["both"]),
                      "dot": v["dot"], "agree": v["agree"], "both_nonzero": v["both"]}
                  for p, v in r["pairs"].items()},
    }


def close(got, want, rel, what):
    if want is None or got is None:
        if got is not want and not (got is None and want is None):
            raise AssertionError("%s: got %r, expected %r" % (what, got, want))
        return 0.0
    err = abs(got - want) / max(abs(want), 1e-30)
    if err > rel:
        raise AssertionError("%s: got %r, expected %r (relative error %.2e > %.0e)" % (what, got, want, err, rel))
    return err


def check_row(row, ref, pairs, what, rel=1e-5):
    """Asserts one report row against reference statistics; returns the worst relative error."""
    worst = 0.0
    if row["numel"] != ref_numel(ref):
        raise AssertionError("%s: numel %r, expected %r" % (what, row["numel"], ref_numel(ref)))
    stats = statistics(ref)
    for m, (got, want) in enumerate(zip(row["models"], stats["models"])):
        worst = max(worst, close(got["norm"], want["norm"], rel, "%s norm %d" % (what, m)))
        worst = max(worst, close(got["topk_kept"], want["topk_kept"], rel, "%s topk_kept %d" % (what, m)))
        if got["nonzero"] != want["nonzero"]:
            raise AssertionError("%s nonzero %d: %r vs %r" % (what, m, got["nonzero"], want["nonzero"]))
    for k, (i, j) in enumerate(pairs):
        got, want = row["pairs"][k], stats["pairs"][(i, j)]
        worst = max(worst, close(got["cosine"], want["cosine"], rel, "%s cosine %d/%d" % (what, i, j)))
        worst = max(worst, close(got["sign_agreement"], want["sign_agreement"], 1e-12, "%s sign %d/%d" % (what, i, j)))
        for key in ("agree", "both_nonzero"):
            if got[key] != want[key]:
                raise AssertionError("%s %s %d/%d: %r, expected %r (counts are exact)" % (what, key, i, j, got[key], want[key]))
    return worst


def ref_numel(ref):
    return ref["numel"]


def layer_and_kind(name):
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p == "layers" and i + 1 < len(parts) and parts[i + 1].isdigit():
            return int(parts[i + 1]), ".".join(parts[i + 2:])
    return None, name


def check_report(report, base, finetunes, density=0.2):
    """Asserts the whole --json document (schema, every tensor row, every kind row) against
    numpy; returns the worst relative error and the number of rows checked."""
    for key, kind in (("base", str), ("models", list), ("pairs", list), ("density", float),
                      ("tensors", list), ("kinds", list)):
        if not isinstance(report.get(key), kind):
            raise AssertionError("report[%r] is %r, expected a %s" % (key, report.get(key), kind.__name__))
    n = len(finetunes)
    pairs = [tuple(p) for p in report["pairs"]]
    if pairs != [(i, j) for i in range(n) for j in range(i + 1, n)]:
        raise AssertionError("pairs %r" % pairs)
    for m in report["models"]:
        if set(m) != {"name", "path"}:
            raise AssertionError("model entry keys %r" % sorted(m))
    sums = raw_sums(base, finetunes, density)
    if [t["name"] for t in report["tensors"]] != list(base):
        raise AssertionError("tensor rows are not the base's tensors in order")
    worst, rows = 0.0, 0
    for t in report["tensors"]:
        if list(t) != ["name", "layer", "kind", "numel", "models", "pairs"]:
            raise AssertionError("tensor row keys %r" % list(t))
        layer, kind = layer_and_kind(t["name"])
        if t["layer"] != layer or t["kind"] != kind:
            raise AssertionError("%s: layer %r kind %r, expected %r %r" % (t["name"], t["layer"], t["kind"], layer, kind))
        for p in t["pairs"]:
            if list(p) != ["cosine", "sign_agreement", "dot", "agree", "both_nonzero"]:
                raise AssertionError("pair keys %r" % list(p))
        for m in t["models"]:
            if list(m) != ["norm", "nonzero", "topk_kept"]:
                raise AssertionError("model keys %r" % list(m))
        worst = max(worst, check_row(t, sums[t["name"]], pairs, t["name"]))
        rows += 1
    kinds = {}
    for name in base:
        kinds.setdefault(layer_and_kind(name)[1], []).append(sums[name])
    if [k["kind"] for k in report["kinds"]] != list(kinds):
        raise AssertionError("kind rows %r" % [k["kind"] for k in report["kinds"]])
    for k in report["kinds"]:
        if k["tensors"] != len(kinds[k["kind"]]):
            raise AssertionError("kind %s: %r tensors" % (k["kind"], k["tensors"]))
        worst = max(worst, check_row(k, add_sums(kinds[k["kind"]]), pairs, "kind " + k["kind"]))
        rows += 1
    return worst, rows


# --- the heat map (HeatMap.h's geometry and colour scale) ----------------------------------
MARGIN, CELL, PAIR_GAP, LEGEND_GAP, LEGEND, PANEL_GAP = 8, 12, 6, 4, 10, 16
LOW, MIDDLE, HIGH, MISSING = (33, 102, 172), (247, 247, 247), (178, 24, 43), (160, 160, 160)
PANELS = (("cosine", -1.0, 1.0), ("sign_agreement", 0.0, 1.0))


def read_png(data):
    """-> (width, height, rows of (r, g, b)) of an 8-bit RGB PNG, every chunk's CRC checked."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("not a PNG signature")
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise AssertionError("chunk %r: CRC mismatch" % kind)
        chunks.append((kind, body))
        pos += 12 + length
    if [k for k, _ in chunks][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise AssertionError("chunks %r" % [k for k, _ in chunks])
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if (depth, color, interlace) != (8, 2, 0):
        raise AssertionError("not 8-bit RGB without interlace")
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    stride = 1 + 3 * w
    if len(raw) != h * stride:
        raise AssertionError("%d bytes of scanlines, expected %d" % (len(raw), h * stride))
    rows = []
    for y in range(h):
        if raw[y * stride] != 0:
            raise AssertionError("row %d: filter %d" % (y, raw[y * stride]))
        line = raw[y * stride + 1:(y + 1) * stride]
        rows.append([tuple(line[3 * x:3 * x + 3]) for x in range(w)])
    return w, h, rows


def scale(v, lo, hi):
    t = min(max((v - (lo + hi) / 2) / ((hi - lo) / 2), -1.0), 1.0)
    end = LOW if t < 0 else HIGH
    f = abs(t)
    return tuple(int(np.floor(a + f * (b - a) + 0.5)) for a, b in zip(MIDDLE, end))


def check_png(data, report):
    """Asserts the heat map's size and the colour of every cell against the report's values
    (within 1 per channel: the rounding of a value a few ulps away); returns cells checked."""
    w, h, rows = read_png(data)
    layer_rows = [t for t in report["tensors"] if t["layer"] is not None]
    layers = max(t["layer"] for t in layer_rows) + 1
    kinds = []
    for t in layer_rows:
        if t["kind"] not in kinds:
            kinds.append(t["kind"])
    pairs = len(report["pairs"])
    cells_w = max(pairs * len(kinds) * CELL + max(pairs - 1, 0) * PAIR_GAP, CELL)
    panel_h = layers * CELL + LEGEND_GAP + LEGEND
    if (w, h) != (2 * MARGIN + cells_w, 2 * MARGIN + 2 * panel_h + PANEL_GAP):
        raise AssertionError("PNG is %dx%d" % (w, h))
    checked = 0
    for s, (stat, lo, hi) in enumerate(PANELS):
        top = MARGIN + s * (panel_h + PANEL_GAP)
        for t in layer_rows:
            for p in range(pairs):
                x = MARGIN + p * (len(kinds) * CELL + PAIR_GAP) + kinds.index(t["kind"]) * CELL + CELL // 2
                y = top + t["layer"] * CELL + CELL // 2
                v = t["pairs"][p][stat]
                want = MISSING if v is None else scale(v, lo, hi)
                got = rows[y][x]
                if any(abs(g - e) > 1 for g, e in zip(got, want)):
                    raise AssertionError("%s %s pair %d: pixel %r, expected %r" % (stat, t["name"], p, got, want))
                checked += 1
        legend_y = top + layers * CELL + LEGEND_GAP + 2
        if rows[legend_y][MARGIN] != LOW:
            raise AssertionError("legend starts with %r" % (rows[legend_y][MARGIN],))
        if rows[legend_y][MARGIN + cells_w - 1] != HIGH:
            raise AssertionError("legend ends with %r" % (rows[legend_y][MARGIN + cells_w - 1],))
    return checked
