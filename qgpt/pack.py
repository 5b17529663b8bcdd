"""The packed dataset the firmware reads from its filesystem, one record at a time.

    offset  size  what
    0       8     magic b"QGPTDATA"
    8       2     version (uint16, little-endian)
    10      2     record size R (uint16) = 16
    12      4     number of records N (uint32)
    16      4     CRC32 of the records (uint32)
    20      N*R   records: byte 0 = name length n (1..15), bytes 1..n = token ids
                  (a..z -> 0..25), the rest 0

Records hold the training split in file order (the host's Dataset.train), so
record i is the name the host calls ds.train[i]; the data order of a run
(prng.doc_index) picks records by index, and the device seeks to 20 + i*R: the
dataset is never all in RAM.
"""

import struct
import zlib

from qgpt import checkpoint
from qgpt.data import encode
from qgpt.params import BLOCK, BOS

MAGIC = b"QGPTDATA"
VERSION = 1
RECORD = BLOCK  # 1 length byte + at most 15 letters
HEADER = struct.Struct("<8sHHII")


class PackError(ValueError):
    """A packed dataset that cannot be used, worded for the user."""


def pack(names):
    """The bytes of a packed dataset holding names (a-z, at most 15 letters each)."""
    body = bytearray()
    for name in names:
        ids = encode(name)[1:-1]
        if not 1 <= len(ids) < RECORD:
            raise PackError(f"name {name!r} has {len(ids)} letters: want 1..{RECORD - 1}")
        body += bytes([len(ids), *ids]) + bytes(RECORD - 1 - len(ids))
    return HEADER.pack(MAGIC, VERSION, RECORD, len(names), zlib.crc32(body)) + bytes(body)


def write(path, names):
    checkpoint.write_atomic(path, pack(names))


def unpack(blob, source="packed dataset"):
    """The token lists ([BOS] + ids + [BOS]) of a packed dataset; PackError if it is not one."""
    if len(blob) < HEADER.size:
        raise PackError(f"{source}: too short to be a packed dataset")
    magic, version, record, count, crc = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise PackError(f"{source}: not a packed dataset (bad magic); write it with qgpt pack")
    if version != VERSION or record != RECORD:
        raise PackError(f"{source}: version {version}, record size {record}: this qgpt reads "
                        f"version {VERSION} with {RECORD}-byte records; pack it again")
    body = blob[HEADER.size :]
    if len(body) != count * record or zlib.crc32(body) != crc:
        raise PackError(f"{source}: corrupted or truncated (size or CRC32 mismatch)")
    out = []
    for i in range(count):
        rec = body[i * record : (i + 1) * record]
        n = rec[0]
        if not 1 <= n < RECORD or max(rec[1 : 1 + n]) >= BOS or any(rec[1 + n :]):
            raise PackError(f"{source}: record {i} is not a name (length {n}, want 1.."
                            f"{RECORD - 1} letters a-z and zero padding); pack it again")
        out.append([BOS, *rec[1 : 1 + n], BOS])
    return out
