"""Instructions per call of the small kernels (element-wise, embedding, buffer helpers,
block-scaled state) on synthetic inputs: kiso.py's driver and measure() with other units.

    python experiments/fwperf/ksmall.py [--source DIR] [UNIT ...]

For weighing their native code against instructions (issue 15, point 4): how many
instructions a call costs, and so what a change costs a step (times the calls a step).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.fwperf import kiso  # noqa: E402

# unit -> (the call, the work of one call, its unit); the arrays are kiso.DRIVER's
UNITS = {
    "embedding_fwd": ("K.embedding_forward(0, 0, y, w, x, 3, 5, 16, 2, LO, HI, 2, 2)", 16,
                      "element"),
    "embedding_bwd": ("K.embedding_backward(0, 0, dw, scratch, x, comp, 7, 16, 2, PLO, PHI, 2)",
                      112, "element"),
    "add_forward": ("K.add_forward(0, 0, y, x, q, 0, 112, LO, HI, 2)", 112, "element"),
    "relu_backward": ("K.relu_backward(0, 0, dx, x, 0, 256, 2, 2)", 256, "element"),
    "ce_backward": ("K.cross_entropy_backward(0, 0, y, g, comp, 7, 27, 1, LO, HI, 2)", 189,
                    "element"),
    "widen_8": ("K.widen(0, 0, scratch, comp, 0, 256, 1)", 256, "element"),
    "narrow_8": ("K.narrow(0, 0, comp, 0, m, 256, LO, HI, 1)", 256, "element"),
    "copy32": ("K.copy32(0, 0, scratch, 0, m, 0, 256)", 256, "element"),
    "block_decode_m": ("K.block_decode(0, 0, scratch, comp, dx, 0, 256, 64, 1, 0)", 256,
                       "element"),
    "block_encode_m": ("K.block_encode(0, 0, comp, dx, m, 0, 256, 64, 8, 1, 0)", 256,
                       "element"),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="a copy of firmware/ (default: firmware/ itself)")
    ap.add_argument("units", nargs="*", help="units to measure (default: all)")
    a = ap.parse_args(argv)
    units = {u: UNITS[u] for u in (a.units or UNITS)}
    res = kiso.measure(a.source, units=units)
    for u in units:
        print(f"{u:16s} {res[u]:10.0f}  {res[u] / units[u][1]:6.1f} a {units[u][2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
