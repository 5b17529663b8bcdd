"""Which bytecode functions of the firmware put their frame on the heap at each call.

    python experiments/fwperf/frames.py [FILE ...]   (default: every firmware/*.py)

MicroPython allocates a bytecode function's frame (its n_state words: locals and operand
stack, plus the exception stack) on the heap when it is larger than 11 words
(py/objfun.c, VM_MAX_STATE_ON_STACK), at every call; in the training heap each such
allocation searches the free blocks from the heap's bottom (gc_alloc), thousands of
instructions. Native and viper functions keep their locals on the C stack. Each module
is compiled by mpy-cross for x64 and the prelude of every bytecode function read (.mpy
v6, py/bc.h's MP_BC_PRELUDE_SIG_DECODE); HEAP marks the frames over 11 words.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qgpt import mpyfile  # noqa: E402

_STACK_WORDS = 11  # VM_MAX_STATE_ON_STACK / sizeof(mp_uint_t)


def _uint_at(data, i):
    """(value, next index) of the .mpy's variable-length uint at data[i]."""
    n = 0
    while True:
        b = data[i]
        i += 1
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            return n, i


def _prelude(data, i):
    """(n_state, n_exc_stack, index of the simple name's qstr) of the bytecode at data[i]."""
    z = data[i]
    i += 1
    s, e, k = (z >> 3) & 0xF, (z >> 2) & 1, 0
    while z & 0x80:  # the signature: xFSSSSEA, then xFSSKAED bytes
        z = data[i]
        i += 1
        s |= (z & 0x30) << (2 * k)
        e |= (z & 0x02) << k
        k += 1
    z = data[i]  # the size prelude: xIIIIIIC bytes
    i += 1
    while z & 0x80:
        z = data[i]
        i += 1
    return s + 1, e, _uint_at(data, i)[0]


def frames(mpy):
    """[(depth, name, n_state, n_exc_stack)] of the bytecode functions of an .mpy v6, in
    file order (depth 0: the module body; static qstrs are named by their number)."""
    qstrs, codes = mpyfile.parse(mpy)
    out = []
    for depth, kind, start, _ in codes:
        if kind == "bytecode":
            n_state, n_exc, q = _prelude(mpy, start)
            name = qstrs[q] if q < len(qstrs) else f"qstr {q}"
            if isinstance(name, int):
                name = f"static qstr {name}"
            out.append((depth, name, n_state, n_exc))
    return out


def main(argv=None):
    from qgpt import conformance as cf

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    a = ap.parse_args(argv)
    files = a.files or sorted(str(p) for p in cf.FIRMWARE_DIR.glob("*.py"))
    with tempfile.TemporaryDirectory(prefix="qgpt-frames-") as tmp:
        for path in files:
            out = Path(tmp) / (Path(path).stem + ".mpy")
            subprocess.run([cf.default_mpy_cross(), "-march=x64", "-o", str(out), path],
                           check=True)
            for depth, name, n_state, n_exc in frames(out.read_bytes()):
                heap = "HEAP" if n_state + 3 * n_exc > _STACK_WORDS else ""
                print(f"{Path(path).stem:12s} {'  ' * depth}{name:24s} {n_state:4d} {heap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
