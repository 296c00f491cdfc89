"""Reading and writing safetensors with numpy alone (no torch, no safetensors package).

File layout: an 8-byte little-endian header length N, N bytes of JSON
({"NAME": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}),
padded with spaces to a multiple of 8, then the tensor bytes (offsets relative to the data start).

BF16 tensors are held as uint16 arrays of raw bits; bf16_to_f32 / f32_to_bf16 convert them.
"""
import json
import os
import struct

import numpy as np

# dtype string -> numpy storage dtype (little-endian). BF16 is stored as raw uint16 bits.
NUMPY_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

FLOAT_DTYPES = ("F32", "F16", "BF16")


class SafetensorsError(Exception):
    pass


def contiguous(arr, dtype=None):
    """A C-contiguous array of `dtype` with the same shape (np.ascontiguousarray would turn a 0-d
    array into a 1-d one)."""
    return np.require(np.asarray(arr) if dtype is None else np.asarray(arr).astype(dtype, copy=False),
                      requirements="C")


# ---------------------------------------------------------------------------------------------
# bf16 <-> f32, with integer operations only
# ---------------------------------------------------------------------------------------------
def bf16_to_f32(u16):
    """Raw bf16 bits (uint16 array) -> float32 array (exact)."""
    u16 = np.asarray(u16, dtype=np.uint16)
    return (u16.astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16(f32):
    """float32 array -> raw bf16 bits, round to nearest even; NaN stays NaN (quiet, sign kept);
    overflow rounds to inf as IEEE does."""
    f32 = contiguous(f32, np.float32)
    bits = f32.view(np.uint32)
    high = bits >> np.uint32(16)
    lsb = high & np.uint32(1)
    rounded = (bits + np.uint32(0x7FFF) + lsb) >> np.uint32(16)  # no uint32 overflow: max 0xFFFF7FFF+0x8000
    exp_all_ones = (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
    is_nan = exp_all_ones & ((bits & np.uint32(0x007FFFFF)) != 0)
    out = np.where(is_nan, high | np.uint32(0x40), rounded)
    return out.astype(np.uint16)


def to_f32(dtype, arr):
    """Widen a stored float tensor to float32 (exact for F16 and BF16)."""
    if dtype == "BF16":
        return bf16_to_f32(arr)
    if dtype in ("F16", "F32"):
        return np.asarray(arr).astype(np.float32)
    raise SafetensorsError("to_f32: %s is not a float dtype" % dtype)


def from_f32(dtype, f32):
    """Round a float32 array to a stored float tensor (nearest even)."""
    f32 = np.asarray(f32, dtype=np.float32)
    if dtype == "BF16":
        return f32_to_bf16(f32)
    if dtype == "F16":
        return f32.astype(np.float16)
    if dtype == "F32":
        return f32.copy()
    raise SafetensorsError("from_f32: %s is not a float dtype" % dtype)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _normalize(tensors):
    items = tensors.items() if isinstance(tensors, dict) else tensors
    out = []
    for name, value in items:
        dtype, arr = value
        if dtype not in NUMPY_DTYPES:
            raise SafetensorsError("unsupported dtype %s for %s" % (dtype, name))
        arr = contiguous(arr, NUMPY_DTYPES[dtype])
        out.append((name, dtype, arr))
    return out


def encode_header(entries, metadata=None):
    """entries: [(name, dtype, shape, nbytes)] in data order -> padded header bytes (with length)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, dtype, shape, nbytes in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    return struct.pack("<Q", len(text)) + text


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype_str, ndarray)} (or a list of pairs), written in that order."""
    items = _normalize(tensors)
    head = encode_header([(n, d, a.shape, a.nbytes) for n, d, a in items], metadata)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head)
        for _, _, arr in items:
            f.write(arr.tobytes())
    os.replace(tmp, path)


class StreamingWriter:
    """Writes a safetensors file one tensor at a time: the header is built from the declared
    (name, dtype, shape) list up front, then write(name, array) must follow that order."""

    def __init__(self, path, entries, metadata=None):
        self._entries = [(n, d, tuple(s), int(np.prod(s, dtype=np.int64)) * NUMPY_DTYPES[d].itemsize)
                         for n, d, s in entries]
        self._next = 0
        self._f = open(path, "wb")
        self._f.write(encode_header(self._entries, metadata))

    def write(self, name, arr):
        n, d, s, nbytes = self._entries[self._next]
        if name != n:
            raise SafetensorsError("StreamingWriter: expected %s, got %s" % (n, name))
        self._write_chunk(arr, d)
        self._next += 1

    def write_chunks(self, name, chunks):
        """Writes one tensor given as an iterable of array chunks (flattened in C order)."""
        n, d, s, nbytes = self._entries[self._next]
        if name != n:
            raise SafetensorsError("StreamingWriter: expected %s, got %s" % (n, name))
        written = 0
        for c in chunks:
            written += self._write_chunk(c, d)
        if written != nbytes:
            raise SafetensorsError("StreamingWriter: %s: wrote %d bytes, expected %d" % (name, written, nbytes))
        self._next += 1

    def _write_chunk(self, arr, dtype):
        arr = contiguous(arr, NUMPY_DTYPES[dtype])
        self._f.write(memoryview(arr).cast("B"))
        return arr.nbytes

    def close(self):
        self._f.close()
        if self._next != len(self._entries):
            raise SafetensorsError("StreamingWriter: %d of %d tensors written" % (self._next, len(self._entries)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        else:
            self._f.close()


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def read_header(path):
    """-> (header dict without __metadata__, metadata dict or None, data start offset)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError("%s: file shorter than 8 bytes" % path)
        (n,) = struct.unpack("<Q", raw)
        text = f.read(n)
    if len(text) != n:
        raise SafetensorsError("%s: header truncated" % path)
    header = json.loads(text.decode("utf-8"))
    metadata = header.pop("__metadata__", None)
    return header, metadata, 8 + n


def read_safetensors(path, with_metadata=False):
    """-> {name: (dtype_str, ndarray)} in data-offset order (and the metadata if asked)."""
    header, metadata, start = read_header(path)
    size = os.path.getsize(path)
    entries = sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"][0], kv[1]["data_offsets"][1]))
    out = {}
    with open(path, "rb") as f:
        for name, info in entries:
            dtype = info["dtype"]
            b, e = info["data_offsets"]
            if start + e > size:
                raise SafetensorsError("%s: tensor %s runs past the end of the file" % (path, name))
            f.seek(start + b)
            buf = f.read(e - b)
            arr = np.frombuffer(buf, dtype=NUMPY_DTYPES[dtype]).reshape(info["shape"])
            out[name] = (dtype, arr)
    return (out, metadata) if with_metadata else out


def model_files(path):
    """The safetensors files of a model path (a file, or a directory with model.safetensors or an
    index + shards), in order."""
    if os.path.isfile(path):
        return [path]
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        shards = []
        for shard in weight_map.values():
            if shard not in shards:
                shards.append(shard)
        return [os.path.join(path, s) for s in sorted(shards)]
    if os.path.isfile(single):
        return [single]
    raise SafetensorsError("%s: no model.safetensors or model.safetensors.index.json" % path)


def read_model(path):
    """-> {name: (dtype_str, ndarray)}: shards in file-name order, tensors in data-offset order."""
    out = {}
    for f in model_files(path):
        for name, value in read_safetensors(f).items():
            if name in out:
                raise SafetensorsError("%s: tensor %s appears in two shards" % (path, name))
            out[name] = value
    return out


def read_model_f32(path):
    """-> {name: float32 ndarray} (float tensors widened)."""
    return {n: to_f32(d, a) for n, (d, a) in read_model(path).items()}
