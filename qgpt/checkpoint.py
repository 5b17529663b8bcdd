"""The checkpoint file: one binary format for float and integer runs, host and device.

    offset  size  what
    0       4     magic b"QGPT"
    4       2     version (little-endian uint16)
    6       4     header length L (uint32)
    10      L     header: UTF-8 JSON {"meta": {...}, "arrays": [[name, dtype, count], ...]}
    10+L    ...   the arrays, in header order, little-endian ('<f8' or '<i4'), no padding
    end-4   4     CRC32 of every byte before it (uint32)

Files are written atomically (a temporary file, then a rename), so a crash
leaves the previous checkpoint intact. decode() checks the container (magic,
CRC32, version, header, array sizes); check_run_state() checks what a training
checkpoint must hold (which arrays, their sizes, dtypes and ranges, the meta
fields), so a file with a valid CRC but wrong content is refused in one line.

This module also prepares the paths a user names for output (prepare_output):
every problem with them is one OutputError line, before anything is written.
"""

import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from qgpt.params import N_PARAMS

MAGIC = b"QGPT"
VERSION = 1
DTYPES = {"f8": np.dtype("<f8"), "i4": np.dtype("<i4")}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, worded for the user."""


class OutputError(ValueError):
    """An output path that cannot be written, worded for the user."""


# --- writing files ---


def write_atomic(path, data):
    """Write bytes to path through a temporary file beside it and a rename. On any
    failure (or Ctrl-C) the temporary file is removed and path is left as it was."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def prepare_output(path, option, folder=False):
    """The Path of an output the user named with option (a file, or a folder if folder),
    its missing parent folders created; OutputError if it cannot be written."""
    want = "folder" if folder else "file name"
    if not str(path).strip():
        raise OutputError(f"{option} is empty: give a {want}")
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is a file, not a folder")
    if not folder and path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name")
    where = path if folder else path.parent
    existing = next(p for p in (where, *where.parents, Path(".")) if p.exists())
    if not existing.is_dir():
        raise OutputError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):  # checked before any folder is made
        raise OutputError(f"{option} {path}: the folder {existing} is not writable")
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot create the folder {where} "
                          f"({e.strerror or e})") from None
    return path


# --- the container ---


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
    end = len(data) - 4
    header = _header(data[10 : 10 + hlen] if 10 + hlen <= end else b"", source)
    arrays, pos = {}, 10 + hlen
    for name, code, count in header["arrays"]:
        dt = DTYPES[code]
        if pos + count * dt.itemsize > end:
            raise CheckpointError(f"{source}: array sizes do not match the file length")
        arrays[name] = np.frombuffer(data, dtype=dt, count=count, offset=pos).copy()
        pos += count * dt.itemsize
    if pos != end:
        raise CheckpointError(f"{source}: array sizes do not match the file length")
    return header["meta"], arrays


def _header(blob, source):
    """The parsed header: {"meta": dict, "arrays": [[name, dtype code, count], ...]}."""
    bad = f"{source}: not a readable checkpoint header"
    try:
        header = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{bad} (not UTF-8 JSON)") from None
    if not isinstance(header, dict) or not isinstance(header.get("meta"), dict) \
            or not isinstance(header.get("arrays"), list):
        raise CheckpointError(f"{bad} (want an object with meta and arrays)")
    names = set()
    for entry in header["arrays"]:
        ok = (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
              and entry[1] in DTYPES and _whole(entry[2]) and entry[2] >= 0)
        if not ok:
            raise CheckpointError(f"{bad} (array entry {str(entry)[:60]}: want "
                                  "[name, 'f8' or 'i4', count])")
        if entry[0] in names:
            raise CheckpointError(f"{bad} (array {entry[0][:40]} appears twice)")
        names.add(entry[0])
    return header


def save(path, meta, arrays):
    write_atomic(path, encode(meta, arrays))


def load(path):
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder without a checkpoint.bin") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror or e})") from None
    return decode(data, str(path))


# --- what a training checkpoint holds ---

RUN_ARRAYS = ("params", "adam_m", "adam_v")  # each N_PARAMS values, laid out by params.PARAMS


def _whole(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x):
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def check_run_state(meta, arrays, kind, source, store_range=None, m_limit=None, layout=None):
    """CheckpointError unless meta and arrays are a training state of kind "float" or
    "int": the arrays of layout {name: size} (default the three RUN_ARRAYS with N_PARAMS
    values each; a policy with block-scaled Adam state or Kahan updates has more),
    float64 and finite for a float run, int32 for an integer run with params in
    store_range (lo, hi), |adam_m| <= m_limit, adam_v >= 0 and block shifts in 0..31;
    step, seconds and the integer meta fields well formed."""
    def refuse(what):
        raise CheckpointError(f"{source}: {what}; this is not a usable qgpt checkpoint")

    if meta.get("kind") != kind:
        refuse(f"kind {str(meta.get('kind'))[:20]!r} disagrees with its config's format "
               f"(want {kind!r})")
    layout = layout or dict.fromkeys(RUN_ARRAYS, N_PARAMS)
    if set(arrays) != set(layout):
        missing, extra = set(layout) - set(arrays), set(arrays) - set(layout)
        refuse(f"arrays {sorted(missing)} missing" if missing else f"unknown arrays "
               f"{sorted(extra)[:5]}")
    want_dtype = DTYPES["f8" if kind == "float" else "i4"]
    for name, size in layout.items():
        a = arrays[name]
        if a.size != size:
            refuse(f"array {name} holds {a.size} values, want {size}")
        if a.dtype != want_dtype:
            refuse(f"array {name} is {a.dtype}, a{' float' if kind == 'float' else 'n integer'} "
                   f"run stores {want_dtype}")
    if kind == "float":
        for name in RUN_ARRAYS:
            bad = np.flatnonzero(~np.isfinite(arrays[name]))
            if bad.size:
                refuse(f"{name}[{bad[0]}] is {arrays[name][bad[0]]}")
    else:
        lo, hi = store_range
        _check_range(arrays["params"], "params", lo, hi, refuse)
        _check_range(arrays["adam_m"], "adam_m", -m_limit, m_limit, refuse)
        _check_range(arrays["adam_v"], "adam_v", 0, 2**31 - 1, refuse)
        for name in ("adam_m_shift", "adam_v_shift"):  # block scales (arithmetic.md, 9.6)
            if name in arrays:
                _check_range(arrays[name], name, 0, 31, refuse)
        for field in ("p1", "p2"):
            if not (_whole(meta.get(field)) and 0 <= meta[field] <= 1 << 30):
                refuse(f"meta {field} {str(meta.get(field))[:20]}: want a whole number "
                       "in 0..2**30")
        for field in ("stalled_total", "steps_taken"):
            if not (_whole(meta.get(field)) and meta[field] >= 0):
                refuse(f"meta {field} {str(meta.get(field))[:20]}: want a whole number >= 0")
        sat = meta.get("saturations")
        if not isinstance(sat, dict) or not all(isinstance(k, str) and _whole(v) and v >= 0
                                                for k, v in sat.items()):
            refuse("meta saturations: want {name: count >= 0}")
    if not _whole(meta.get("step")) or meta["step"] < 0:
        refuse(f"meta step {str(meta.get('step'))[:20]}: want a whole number >= 0")
    if not _number(meta.get("seconds")) or meta["seconds"] < 0:
        refuse(f"meta seconds {str(meta.get('seconds'))[:20]}: want a number >= 0")


def _check_range(a, name, lo, hi, refuse):
    bad = np.flatnonzero((a < lo) | (a > hi))
    if bad.size:
        refuse(f"{name}[{bad[0]}] = {a[bad[0]]} lies outside {lo}..{hi}")
