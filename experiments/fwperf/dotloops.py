"""Instructions per multiply-accumulate of isolated viper dot-product loops (issue 15).

    python experiments/fwperf/dotloops.py

Five versions of one int16 dot product of 64 terms, compiled by mpy-cross for the host
and run REPS times on the MicroPython unix port under cachegrind; two values of REPS,
the difference over the difference of MACs. All return the same exact sum (checked).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qgpt import fwprofile as fp  # noqa: E402

N = 64
VARIANTS = ("pair", "pair_registers", "pair_wrap", "single", "single_registers_unrolled")
REGISTER_FIRST = ("pair_registers", "single_registers_unrolled")  # two dummy int arguments

LOOPS = '''import micropython


@micropython.viper
def pair(x, w, n: int, reps: int) -> int:
    """the kernels' int32-pair recipe"""
    px = ptr16(x)
    pw = ptr16(w)
    hh = 0
    ll = 0
    for r in range(reps):
        hh = 0
        ll = 0
        for i in range(n):
            p = ((pw[i] ^ 0x8000) - 0x8000) * ((px[i] ^ 0x8000) - 0x8000)
            hh += p >> 16
            ll += p & 0xFFFF
    return (hh << 16) + ll


@micropython.viper
def pair_registers(hh: int, ll: int, x, w, n: int, reps: int) -> int:
    """the same, hh and ll as the first two locals: viper keeps those in registers"""
    px = ptr16(x)
    pw = ptr16(w)
    for r in range(reps):
        hh = 0
        ll = 0
        for i in range(n):
            p = ((pw[i] ^ 0x8000) - 0x8000) * ((px[i] ^ 0x8000) - 0x8000)
            hh += p >> 16
            ll += p & 0xFFFF
    return (hh << 16) + ll


@micropython.viper
def pair_wrap(x, w, n: int, reps: int) -> int:
    """ll += p without the mask: ll wraps on 32 bits, and the exact sum is recovered at the end"""
    px = ptr16(x)
    pw = ptr16(w)
    hh = 0
    ll = 0
    for r in range(reps):
        hh = 0
        ll = 0
        for i in range(n):
            p = ((pw[i] ^ 0x8000) - 0x8000) * ((px[i] ^ 0x8000) - 0x8000)
            hh += p >> 16
            ll += p
    return ll  # the exact sum on 64 bits; on 32 bits S = (hh << 16) + ((ll - (hh << 16)) mod 2**32)


@micropython.viper
def single(x, w, n: int, reps: int) -> int:
    """one int32 accumulator: exact while sum |w x| < 2**31 (a bound checked first)"""
    px = ptr16(x)
    pw = ptr16(w)
    acc = 0
    for r in range(reps):
        acc = 0
        for i in range(n):
            acc += ((pw[i] ^ 0x8000) - 0x8000) * ((px[i] ^ 0x8000) - 0x8000)
    return acc


@micropython.viper
def single_registers_unrolled(acc: int, i: int, x, w, n: int, reps: int) -> int:
    """one accumulator, acc and i as the first two locals (registers), unrolled by 4"""
    px = ptr16(x)
    pw = ptr16(w)
    for r in range(reps):
        acc = 0
        i = 0
        while i < n:
            acc += (((pw[i] ^ 0x8000) - 0x8000) * ((px[i] ^ 0x8000) - 0x8000)
                    + ((pw[i + 1] ^ 0x8000) - 0x8000) * ((px[i + 1] ^ 0x8000) - 0x8000)
                    + ((pw[i + 2] ^ 0x8000) - 0x8000) * ((px[i + 2] ^ 0x8000) - 0x8000)
                    + ((pw[i + 3] ^ 0x8000) - 0x8000) * ((px[i + 3] ^ 0x8000) - 0x8000))
            i += 4
    return acc

'''

RUNNER = """import sys
from array import array
import loops
name, reps = sys.argv[1], int(sys.argv[2])
x = array("h", [(i * 7919) % 4096 - 2048 for i in range(64)])
w = array("h", [(i * 104729) % 4096 - 2048 for i in range(64)])
f = getattr(loops, name)
print(f(0, 0, x, w, 64, reps) if name in REGISTER_FIRST else f(x, w, 64, reps))
"""


def count(cmd, cwd, out):
    r = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                        f"--cachegrind-out-file={out}", *cmd], cwd=cwd, capture_output=True,
                       text=True, check=True)
    return fp.parse_cachegrind(Path(out).read_text()).total, r.stdout.strip()


def main():
    from tabulate import tabulate

    from qgpt import conformance as cf

    rows, sums = [], set()
    with tempfile.TemporaryDirectory(prefix="qgpt-dot-") as tmp:
        tmp = Path(tmp)
        (tmp / "loops.py").write_text(LOOPS)
        subprocess.run([cf.default_mpy_cross(), "-march=host", "loops.py"], cwd=tmp, check=True)
        (tmp / "loops.py").unlink()
        (tmp / "run.py").write_text(RUNNER.replace("REGISTER_FIRST", repr(REGISTER_FIRST)))
        for name in VARIANTS:
            (a, _), (b, s) = (count([fp.default_micropython(), "run.py", name, str(reps)], tmp,
                                    tmp / f"cg-{name}-{reps}") for reps in (100, 1100))
            sums.add(s)
            rows.append([name, round((b - a) / (1000 * N), 1)])
    print(tabulate(rows, headers=["loop", "instructions/MAC"], tablefmt="github"))
    if len(sums) != 1:
        print(f"the versions disagree: {sorted(sums)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
