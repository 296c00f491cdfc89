"""Comparing mergec's output with float32 numpy references, in ulps of the output dtype."""
import numpy as np

import st

_BITS = {
    "F32": (np.uint32, np.uint32(0x80000000), np.uint32(0x7FFFFFFF), np.uint32(0x7F800000), np.uint32(0x007FFFFF)),
    "F16": (np.uint16, np.uint16(0x8000), np.uint16(0x7FFF), np.uint16(0x7C00), np.uint16(0x03FF)),
    "BF16": (np.uint16, np.uint16(0x8000), np.uint16(0x7FFF), np.uint16(0x7F80), np.uint16(0x007F)),
}


class CompareError(AssertionError):
    pass


def raw_bits(dtype, arr):
    """The stored bit patterns of a float tensor (BF16 arrays already are uint16 bits)."""
    utype = _BITS[dtype][0]
    arr = st.contiguous(arr)
    if dtype == "BF16":
        return arr.astype(np.uint16, copy=False)
    return arr.view(utype)


def ordered(dtype, bits):
    """Sign-magnitude bits -> integers whose order is the order of the float values (and whose
    differences are ulp distances); +0 and -0 both map to 0."""
    utype, sign, mag, _, _ = _BITS[dtype]
    b = bits.astype(utype, copy=False)
    m = (b & mag).astype(np.int64)
    return np.where((b & sign) != 0, -m, m)


def is_nan(dtype, bits):
    _, _, _, exp, frac = _BITS[dtype]
    return ((bits & exp) == exp) & ((bits & frac) != 0)


def compare(actual_dtype, actual, expected_f32, max_ulp=1):
    """Rounds the f32 reference to actual_dtype (nearest even) and measures the ulp distance.
    Returns (max ulp distance, number of bit-exact elements, number of elements). NaN against
    NaN counts as exact; NaN against a number is an unbounded distance. `max_ulp` is the caller's
    bound, kept in the signature for assert_tensor."""
    if actual_dtype not in _BITS:
        raise CompareError("compare: %s is not a float dtype" % actual_dtype)
    expected = st.from_f32(actual_dtype, np.asarray(expected_f32, dtype=np.float32))
    a = raw_bits(actual_dtype, actual).reshape(-1)
    e = raw_bits(actual_dtype, expected).reshape(-1)
    if a.shape != e.shape:
        raise CompareError("compare: %d elements against %d" % (a.size, e.size))
    n_total = int(a.size)
    n_exact = int(np.count_nonzero(a == e))
    an, en = is_nan(actual_dtype, a), is_nan(actual_dtype, e)
    dist = np.abs(ordered(actual_dtype, a) - ordered(actual_dtype, e))
    dist = np.where(an & en, 0, dist)
    if np.any(an != en):
        return (float("inf"), n_exact, n_total)
    return (int(dist.max()) if n_total else 0, n_exact, n_total)


def assert_tensor(name, actual_dtype, actual, expected_f32, max_ulp=1, expected_dtype=None, quiet=False):
    """Checks dtype, shape and values of one output tensor; prints
    `tensor NAME: max ulp K, bit-exact X/Y` and returns (K, X, Y). Raises CompareError."""
    expected_f32 = np.asarray(expected_f32, dtype=np.float32)
    if expected_dtype is not None and actual_dtype != expected_dtype:
        raise CompareError("tensor %s: dtype %s, expected %s" % (name, actual_dtype, expected_dtype))
    if tuple(actual.shape) != tuple(expected_f32.shape):
        raise CompareError("tensor %s: shape %s, expected %s" % (name, tuple(actual.shape), tuple(expected_f32.shape)))
    k, x, y = compare(actual_dtype, actual, expected_f32, max_ulp)
    if not quiet:
        print("tensor %s: max ulp %s, bit-exact %d/%d" % (name, k, x, y))
    if k > max_ulp:
        a32 = st.to_f32(actual_dtype, actual).reshape(-1)
        e32 = st.to_f32(actual_dtype, st.from_f32(actual_dtype, expected_f32)).reshape(-1)
        bad = np.flatnonzero(a32 != e32)[:5]
        detail = ", ".join("[%d] got %r want %r" % (i, float(a32[i]), float(e32[i])) for i in bad)
        raise CompareError("tensor %s: max ulp %s > %d (%s)" % (name, k, max_ulp, detail))
    return k, x, y


def assert_model(actual, expected, max_ulp=1, expected_dtypes=None, order=None):
    """actual: {name: (dtype, array)} as read from the output; expected: {name: f32 array}.
    Checks the tensor set (and order, when given) and every tensor; prints a total."""
    if set(actual) != set(expected):
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        raise CompareError("output tensors differ: missing %s, unexpected %s" % (missing, extra))
    if order is not None and list(actual) != list(order):
        raise CompareError("output tensor order %s, expected %s" % (list(actual), list(order)))
    worst, exact, total = 0, 0, 0
    for name in expected:
        dtype, arr = actual[name]
        want = None if expected_dtypes is None else (
            expected_dtypes if isinstance(expected_dtypes, str) else expected_dtypes[name])
        k, x, y = assert_tensor(name, dtype, arr, expected[name], max_ulp, want)
        worst, exact, total = max(worst, k), exact + x, total + y
    print("all %d tensors: max ulp %s, bit-exact %d/%d" % (len(expected), worst, exact, total))
    return worst, exact, total


def assert_copy(name, actual_dtype, actual, src_dtype, src):
    """A tensor copied byte for byte."""
    if actual_dtype != src_dtype or tuple(actual.shape) != tuple(src.shape) or actual.tobytes() != np.asarray(src).tobytes():
        raise CompareError("tensor %s: not a byte copy of the source (%s %s vs %s %s)"
                           % (name, actual_dtype, tuple(actual.shape), src_dtype, tuple(np.shape(src))))
    print("tensor %s: byte copy, %d elements" % (name, np.asarray(src).size))
