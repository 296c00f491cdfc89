"""Safetensors with numpy alone, for the GPU check scripts (make_models.py, compare.py).

Self-contained (the bundle carries tests/gpu/*.py and nothing else of the repository); works
with numpy 1.2x and 2.x. BF16 tensors are held as uint16 bit patterns.
"""
import json
import mmap
import os
import struct

import numpy as np

STORAGE = {"F32": np.dtype("<u4"), "F16": np.dtype("<u2"), "BF16": np.dtype("<u2"),
           "F64": np.dtype("<u8"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
           "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("u1")}
ITEMSIZE = {k: v.itemsize for k, v in STORAGE.items()}

# dtype -> (sign bit, magnitude mask, exponent mask, fraction mask) of the bit patterns
FLOAT_BITS = {"F32": (0x80000000, 0x7FFFFFFF, 0x7F800000, 0x007FFFFF),
              "F16": (0x8000, 0x7FFF, 0x7C00, 0x03FF),
              "BF16": (0x8000, 0x7FFF, 0x7F80, 0x007F)}


def f32_to_bf16(x):
    """float32 -> bf16 bits (uint16), round to nearest even (finite inputs; a NaN stays NaN
    unless its payload sits only in the low half)."""
    b = np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint32)
    t = b >> np.uint32(16)
    t &= np.uint32(1)
    t += np.uint32(0x7FFF)
    t += b
    # little-endian: the high half of each uint32 is the odd uint16
    return t.view(np.uint16)[1::2].copy().reshape(np.shape(x))


def bf16_to_f32(u16):
    return (np.asarray(u16, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def encode(dtype, f32):
    """float32 values -> the stored array of `dtype` (BF16/F16/F32)."""
    if dtype == "BF16":
        return f32_to_bf16(f32)
    if dtype == "F16":
        return np.asarray(f32, dtype=np.float32).astype(np.float16)
    if dtype == "F32":
        return np.ascontiguousarray(f32, dtype=np.float32)
    raise ValueError("encode: unsupported dtype %s" % dtype)


def header_bytes(entries, metadata=None):
    """entries: [(name, dtype, shape)] in file order -> (header bytes incl. the 8-byte length,
    {name: (begin, end)} relative to the data start, total data size)."""
    header, offsets, offset = {}, {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in entries:
        n = ITEMSIZE[dtype]
        for d in shape:
            n *= int(d)
        header[name] = {"dtype": dtype, "shape": [int(d) for d in shape], "data_offsets": [offset, offset + n]}
        offsets[name] = (offset, offset + n)
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, offsets, offset


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def model_files(directory):
    """The safetensors files of a model directory (model.safetensors or the index's shards)."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        seen = []
        for fname in weight_map.values():
            if fname not in seen:
                seen.append(fname)
        return [os.path.join(directory, s) for s in seen]
    single = os.path.join(directory, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    return sorted(os.path.join(directory, s) for s in os.listdir(directory) if s.endswith(".safetensors"))


class Model:
    """The tensors of a model directory, memory-mapped: tensors() -> {name: (dtype, shape,
    file, begin, end)}; raw(name) -> a uint8 view of the stored bytes."""

    def __init__(self, directory):
        self.directory = directory
        self.entries = {}
        self._maps = {}
        for path in model_files(directory):
            header, start = read_header(path)
            for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                b, e = info["data_offsets"]
                self.entries[name] = (info["dtype"], tuple(info["shape"]), path, start + b, start + e)

    def _map(self, path):
        if path not in self._maps:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self._maps[path] = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size else b""
        return self._maps[path]

    def raw(self, name):
        dtype, shape, path, b, e = self.entries[name]
        return np.frombuffer(self._map(path), dtype=np.uint8, count=e - b, offset=b)

    def array(self, name):
        """The stored elements (BF16/F16/F32 as unsigned bit patterns)."""
        dtype = self.entries[name][0]
        return self.raw(name).view(STORAGE[dtype])

    def close(self):
        for m in self._maps.values():
            try:
                m.close()
            except (BufferError, AttributeError):  # arrays still view it: the GC unmaps it
                pass
        self._maps = {}
