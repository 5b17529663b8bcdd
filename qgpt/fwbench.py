"""The firmware's training speed on the MicroPython unix port, viper vs bytecode.

    python -m qgpt.fwbench [--format q4.12] [--steps 200] [--repeats 3]

Runs firmware/qgpt_train.py (compiled by mpy-cross, as a board gets it) on the
built-in names, and the same firmware as plain bytecode: every `@micropython.viper`
decorator removed, and viper's ptr8/ptr16/ptr32 replaced by uctypes arrays over the
same buffers (unsigned loads, truncating stores, as viper's; a pointer made from an
address, ptr16(int(p8) + offset), is a uctypes array made at each cast, which the
kernels' byte-address loops do in their inner loops: the bytecode build pays for it).
Both builds train the same steps and must end in the same state hash; the table gives
steps/s (the training loop's own time, from the device's `done` line, the median of
the repeats) and the speedup of viper over bytecode.
"""

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

from qgpt import conformance as cf
from qgpt.firmware_build import firmware_modules

PTR_SHIM = '''"""viper's pointer casts for plain bytecode (qgpt/fwbench.py): uctypes arrays over a
buffer, with unsigned loads and truncating stores like viper's."""
import uctypes

_N8 = 1 << 16  # element counts larger than any firmware buffer
_N16 = 1 << 15
_N32 = 1 << 14


def addr(p):
    """int(p) of a pointer: its address (plain_sources rewrites the kernels' int(p8))."""
    return uctypes.addressof(p)


def _at(buf):  # a buffer, or an address (viper's ptr16(int(p8) + offset))
    return buf if isinstance(buf, int) else uctypes.addressof(buf)


def ptr8(buf):
    return uctypes.bytearray_at(_at(buf), _N8)


def ptr16(buf):
    return uctypes.struct(_at(buf), {"a": (uctypes.ARRAY | 0, uctypes.UINT16 | _N16)}).a


def ptr32(buf):
    return uctypes.struct(_at(buf), {"a": (uctypes.ARRAY | 0, uctypes.UINT32 | _N32)}).a
'''


def plain_sources(dest, source_dir=cf.FIRMWARE_DIR):
    """The firmware as plain bytecode in dest: viper decorators removed, ptr casts
    from the shim. Returns dest."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "vptr.py").write_text(PTR_SHIM)
    for mod in firmware_modules(source_dir):
        src = (Path(source_dir) / f"{mod}.py").read_text()
        uses_ptr = re.search(r"\bptr(8|16|32)\(", src) is not None
        src = re.sub(r"^\s*@micropython\.viper\s*\n", "", src, flags=re.M)
        src = re.sub(r"\bint\(([pq][a-z]*(8|16|32))\)", r"addr(\1)", src)  # int(p8): address
        if uses_ptr:
            src = "from vptr import addr, ptr8, ptr16, ptr32  # noqa\n" + src
        (dest / f"{mod}.py").write_text(src)
    return dest


def build_plain(dest, work):
    """The bytecode build in dest, compiled by mpy-cross like the viper one."""
    import subprocess

    src = plain_sources(Path(work) / "plain-src")
    Path(dest).mkdir(parents=True, exist_ok=True)
    cf.build_firmware(dest, "mpy", source_dir=src)
    r = subprocess.run([cf.default_mpy_cross(), "-march=host", "-o", str(Path(dest) / "vptr.mpy"),
                        str(src / "vptr.py")], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"mpy-cross failed on vptr.py: {r.stderr.strip()}")
    return Path(dest)


def timed_run(fw, data, folder, fmt, steps, heapsize, micropython=None):
    """(steps/s of the training loop, the state hash, heap peak) of one device run."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    case = cf.TrainCase(fmt, "nearest")
    config = cf.device_config(case, data, stop_at=steps, log_every=steps)
    run = cf.finish_training(cf.start_training(config, folder, micropython, heapsize,
                                               firmware_dir=fw), folder)
    if run.failure:
        raise RuntimeError(f"the device failed: {run.failure}")
    seconds = float(run.stdout.split(" seconds ")[-1].split()[0])
    return steps / max(seconds, 1e-3), run.done["hash"], run.done["heap_peak"]


def bench(fmt="q4.12", steps=200, repeats=3, micropython=None):
    """Rows [build, steps, steps/s, x bytecode, heap peak], and whether both builds
    end in the same state."""
    with tempfile.TemporaryDirectory(prefix="qgpt-fwbench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "names.bin"
        cf.pack_names(None, data)
        viper = cf.firmware_build(tmp / "viper")
        plain = build_plain(tmp / "plain", tmp)
        rates = {"viper": [], "bytecode": []}
        hashes, peaks = {}, {}
        for r in range(repeats):  # interleaved, so that machine noise hits both
            for name, fw, heap in (("viper", viper, cf.TRAIN_HEAPSIZE),
                                   ("bytecode", plain, "2M")):  # uctypes views are garbage
                rate, h, peak = timed_run(fw, data, tmp / f"{name}{r}", fmt, steps, heap,
                                          micropython)
                rates[name].append(rate)
                hashes[name], peaks[name] = h, peak
    v, b = statistics.median(rates["viper"]), statistics.median(rates["bytecode"])
    rows = [["viper kernels (.mpy)", steps, round(v, 1), round(v / b, 1), peaks["viper"]],
            ["plain bytecode (.mpy)", steps, round(b, 2), 1.0, peaks["bytecode"]]]
    return rows, hashes["viper"] == hashes["bytecode"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m qgpt.fwbench", description=__doc__.splitlines()[0])
    ap.add_argument("--format", default="q4.12")
    ap.add_argument("--steps", type=int, default=200, help="training steps of each run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--micropython", default=None, help="the unix port (default: the venv's)")
    a = ap.parse_args(argv)
    from tabulate import tabulate

    rows, agree = bench(a.format, a.steps, a.repeats, a.micropython)
    print(tabulate(rows, headers=["build", "steps", "steps/s", "x bytecode", "heap peak"],
                   tablefmt="github"))
    print(f"\n{a.format}, nearest rounding, the built-in names, MicroPython unix port; median "
          f"of {a.repeats}; the two builds' final states are {'equal' if agree else 'DIFFERENT'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
