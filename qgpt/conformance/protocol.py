"""The op level's transport: the request file the host writes for
firmware/conform_ops.py (a JSON header line per case, then the raw little-endian
input arrays), and the parsing of what the device prints back (one hex line per
output tensor)."""

import json

import numpy as np

REQUEST_MAGIC = b"QGPT-OPS 1\n"
REQUEST_END = b"END\n"
# typecode -> little-endian numpy dtype ("b": a policy's 8-bit classes)
DTYPES = {"h": "<i2", "H": "<u2", "i": "<i4", "B": "u1", "b": "i1"}


def _array_bytes(tc, a, what):
    a = np.asarray(a, dtype=np.int64).ravel()
    info = np.iinfo(DTYPES[tc])
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise ValueError(f"{what}: values outside typecode {tc!r}")
    return a.astype(DTYPES[tc]).tobytes()


def write_request(cases, path):
    """The binary request for firmware/conform_ops.py."""
    with open(path, "wb") as f:
        f.write(REQUEST_MAGIC)
        for i, c in enumerate(cases):
            out = [[n, v[0], int(v[1].size)] for n, v in c.expected.items() if isinstance(v, tuple)]
            header = {"id": i, "op": c.op, "policy": c.policy, "p": c.params,
                      "in": [[n, tc, int(a.size)] for n, (tc, a) in c.inputs.items()], "out": out}
            f.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
            for n, (tc, a) in c.inputs.items():
                f.write(_array_bytes(tc, a, f"{c.op} [{c.name}] input {n}"))
        f.write(REQUEST_END)


def parse_reply(text):
    """Device stdout -> (banner, results {id: {name: value}}, errors {id: message},
    heap {id: free bytes})."""
    banner, results, errors, heap = "", {}, {}, {}
    current = None
    for line in text.splitlines():
        parts = line.split(" ", 4)
        tag = parts[0]
        if tag == "QGPT-OPS":
            banner = line
        elif tag == "case":
            current = {}
        elif tag == "t" and current is not None and len(parts) == 5:
            name, tc, n, hexdata = parts[1], parts[2], int(parts[3]), parts[4]
            try:
                a = np.frombuffer(bytes.fromhex(hexdata), dtype=DTYPES[tc]).astype(np.int64)
            except (ValueError, KeyError):  # a garbled line: the tensor counts as missing
                a = None
            current[name] = a if a is not None and a.size == n else None
        elif tag == "s" and current is not None:
            current[parts[1]] = int(line.split(" ", 2)[2])
        elif tag == "ok":
            results[int(parts[1])] = current
            heap[int(parts[1])] = int(parts[2])
            current = None
        elif tag == "error":
            errors[int(parts[1])] = line.split(" ", 2)[2] if len(parts) > 2 else "?"
            current = None
    return banner, results, errors, heap
