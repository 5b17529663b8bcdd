"""The checkpoint file: one binary format for float and integer runs, host and device.

    offset  size  what
    0       4     magic b"QGPT"
    4       2     version (little-endian uint16)
    6       4     header length L (uint32)
    10      L     header: UTF-8 JSON {"meta": {...}, "arrays": [[name, dtype, count], ...]}
    10+L    ...   the arrays, in header order, little-endian ('<f8' or '<i4'), no padding
    end-4   4     CRC32 of every byte before it (uint32)

Files are written atomically (a temporary file, then a rename), so a crash
leaves the previous checkpoint intact.
"""

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

MAGIC = b"QGPT"
VERSION = 1
DTYPES = {"f8": np.dtype("<f8"), "i4": np.dtype("<i4")}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, worded for the user."""


def write_atomic(path, data):
    """Write bytes to path through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def encode(meta, arrays):
    """The bytes of a checkpoint holding meta (JSON-able) and named numpy arrays."""
    table, blobs = [], []
    for name, a in arrays.items():
        code = "f8" if a.dtype.kind == "f" else "i4"
        if code == "i4" and a.size and (a.min() < -(2**31) or a.max() >= 2**31):
            raise ValueError(f"array {name} does not fit int32")
        table.append([name, code, int(a.size)])
        blobs.append(np.ascontiguousarray(a, dtype=DTYPES[code]).tobytes())
    header = json.dumps({"meta": meta, "arrays": table}, sort_keys=True).encode()
    body = MAGIC + struct.pack("<HI", VERSION, len(header)) + header + b"".join(blobs)
    return body + struct.pack("<I", zlib.crc32(body))


def decode(data, source="checkpoint"):
    """(meta, {name: array}) from checkpoint bytes; CheckpointError if they are not one."""
    if len(data) < 14 or data[:4] != MAGIC:
        raise CheckpointError(f"{source}: not a qgpt checkpoint (bad magic)")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise CheckpointError(f"{source}: corrupted or truncated (CRC32 mismatch)")
    version, hlen = struct.unpack("<HI", data[4:10])
    if version != VERSION:
        raise CheckpointError(
            f"{source}: checkpoint version {version}, this qgpt reads version {VERSION}"
        )
    header = json.loads(data[10 : 10 + hlen])
    arrays, pos = {}, 10 + hlen
    for name, code, count in header["arrays"]:
        dt = DTYPES[code]
        arrays[name] = np.frombuffer(data, dtype=dt, count=count, offset=pos).copy()
        pos += count * dt.itemsize
    if pos != len(data) - 4:
        raise CheckpointError(f"{source}: array sizes do not match the file length")
    return header["meta"], arrays


def save(path, meta, arrays):
    write_atomic(path, encode(meta, arrays))


def load(path):
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    return decode(data, str(path))
