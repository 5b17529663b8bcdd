"""Level "ops": every firmware kernel on golden vectors, compared with `==`.

One device process per format, started as soon as its request is written: the
MicroPython unix port (target "unix") or the int32 emulation (target "int32")."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qgpt.conformance.build import HEAPSIZE_PY, default_micropython, device_env, firmware_build
from qgpt.conformance.cases import build_cases
from qgpt.conformance.inputs import FORMATS, NO_FORMAT
from qgpt.conformance.protocol import DTYPES, parse_reply, write_request
from qgpt.conformance.report import HEAPSIZE, MAX_LISTED, OPS_LEVEL, Mismatch, OpsReport
from qgpt.firmware_build import FIRMWARE_DIR

LEVEL = OPS_LEVEL
TARGETS = ("unix", "int32")


def _start_device(target, micropython, firmware_dir, request, heapsize):
    """The running device process, or the OSError that prevented it."""
    env = device_env(firmware_dir)
    if target == "int32":
        cmd = [sys.executable, "-c", "import sys; from qgpt.conformance.int32 import "
               "emulate_int32; emulate_int32(sys.argv[1], sys.argv[2])", str(request),
               str(firmware_dir)]
    else:
        cmd = [micropython, "-X", f"heapsize={heapsize}", "-m", "conform_ops", str(request)]
    try:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
    except OSError as e:
        return e


def compare(cases, results, errors, report, fmt):
    """Compare the device's outputs with the goldens; add mismatches to report."""
    if not results and len(errors) > 1 and len(set(errors.values())) == 1:
        # the device failed as a whole (it did not start, or died at once): say it once
        msg = next(iter(errors.values()))
        report.mismatches.append(Mismatch(LEVEL, "(device)", fmt, "all cases", "<device error>",
                                          None, msg, None))
        for c in cases:  # every op's row fails: none of its values was compared
            report.mismatch_count[(c.op, c.fmt, c.name, "<device error>")] = 1
        return
    for i, c in enumerate(cases):
        if i in errors or i not in results:
            msg = errors.get(i, "no result (the device stopped before this case)")
            report.mismatches.append(Mismatch(LEVEL, c.op, c.fmt, c.name, "<device error>", None,
                                              msg, None))
            report.mismatch_count[(c.op, c.fmt, c.name, "<device error>")] = 1
            continue
        got = results[i]
        for name, want in c.expected.items():
            report.values[fmt] = report.values.get(fmt, 0) + (
                want[1].size if isinstance(want, tuple) else 1)
            dev = got.get(name)
            if isinstance(want, tuple):
                exp = np.asarray(want[1], dtype=np.int64)
                if dev is None or dev.size != exp.size:
                    bad = [(None, "missing" if dev is None else f"{dev.size} values",
                            f"{exp.size} values")]
                else:
                    diff = np.flatnonzero(dev != exp.ravel())
                    bad = [(np.unravel_index(j, exp.shape), int(dev[j]), int(exp.flat[j]))
                           for j in diff]
            else:
                bad = [] if dev == want else [(None, dev, want)]
            if bad:
                report.mismatch_count[(c.op, c.fmt, c.name, name)] = len(bad)
                for idx, d, s in bad[:MAX_LISTED]:
                    idx = None if idx is None else tuple(int(k) for k in idx)
                    report.mismatches.append(Mismatch(LEVEL, c.op, c.fmt, c.name, name, idx, d, s))


def run_ops(formats=FORMATS, micropython=None, seed=0, heapsize=None, build="mpy",
            cases=None, target="unix", firmware_dir=FIRMWARE_DIR, workdir=None):
    """Run the op-level conformance; returns an OpsReport.

    formats: data formats to test (the format-free group NO_FORMAT is added unless
    cases is given); cases: {format: [Case]} to run instead of building them (tests
    use it to corrupt a golden value). target: "unix", the MicroPython unix port
    (micropython: its path; heapsize; build "mpy" or "py"), or "int32", the firmware
    run by CPython with every viper intermediate checked against int32 (slower: it
    leaves out the exhaustive exp domains, whose extremes the edge cases hold).
    firmware_dir: the firmware sources (tests point it at an altered copy).
    One device process per format, started as soon as its request is written.
    """
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is unknown: want one of {', '.join(TARGETS)}")
    t0 = time.time()
    micropython = micropython or default_micropython()
    heapsize = heapsize or (HEAPSIZE_PY if build == "py" else HEAPSIZE)
    if cases is None:
        groups = [NO_FORMAT] + [f for f in formats if f != NO_FORMAT]
        cases_of = None
    else:
        groups, cases_of = list(cases), cases
    report = OpsReport(cases=[], heapsize=heapsize)
    with tempfile.TemporaryDirectory(prefix="qgpt-conform-", dir=workdir) as tmp:
        tmp = Path(tmp)
        fw = firmware_build(tmp / "firmware", target, build, firmware_dir, micropython)
        running = []
        for fmt in groups:
            group = (cases_of[fmt] if cases_of is not None
                     else build_cases(fmt, seed, exhaustive=target != "int32"))
            request = tmp / f"request-{fmt.replace('.', '_') if fmt != NO_FORMAT else 'none'}.bin"
            write_request(group, request)
            running.append((fmt, group,
                            _start_device(target, micropython, fw, request, heapsize)))
            report.cases += group
        for fmt, group, proc in running:
            if isinstance(proc, OSError):
                out, err, code = "", f"cannot run {micropython}: {proc}", -1
            else:
                out, err = proc.communicate(timeout=1800)
                code = proc.returncode
            banner, results, errors, heap = parse_reply(out)
            if code != 0 and not errors:
                why = err.strip().splitlines()[-1] if err.strip() else f"exit code {code}"
                errors = {i: why for i in range(len(group)) if i not in results}
            report.device = banner.split(" ", 2)[-1] if banner else f"{target} (no banner)"
            if target == "int32":
                report.device += " (CPython, int32-checked)"
            if heap and min(heap.values()) >= 0:
                low = min(heap.values())
                report.heap_free_min = low if report.heap_free_min is None else min(
                    low, report.heap_free_min)
            compare(group, results, errors, report, fmt)
    report.seconds = time.time() - t0
    return report


def conformance_ops(formats=None, micropython=None, seed=0, heapsize=None, build="mpy",
                    target="unix", out=None, corrupt=None):
    """The CLI's entry point: run, print the summary table and the first mismatches,
    return the exit code (0 all equal, 1 any mismatch or device error).
    corrupt: an op name; alters one of its golden values first (a self-test)."""
    out = out or sys.stdout
    formats = tuple(formats or FORMATS)
    cases = None
    if corrupt:
        cases = {f: build_cases(f, seed) for f in (NO_FORMAT, *formats)}
        corrupt_one(cases, corrupt)
    report = run_ops(formats, micropython, seed, heapsize, build, cases, target)
    print(report.summary(), file=out)
    for m in report.mismatches[:20]:
        print(m, file=out)
    if len(report.mismatches) > 20:
        print(f"... {len(report.mismatches) - 20} more listed mismatches", file=out)
    return report.exit_code


def corrupt_one(cases, op):
    """Add 1 to the first expected tensor value of the first case of op; returns
    (format, case, tensor, flat index) of the altered value."""
    for fmt, group in cases.items():
        for c in group:
            if c.op != op:
                continue
            for name, want in c.expected.items():
                if isinstance(want, tuple) and want[1].size:
                    a = np.array(want[1], dtype=np.int64)
                    j = a.size // 2
                    a.flat[j] += 1 if a.flat[j] < np.iinfo(DTYPES[want[0]]).max else -1
                    c.expected[name] = (want[0], a)
                    return fmt, c.name, name, j
    raise ValueError(f"no case of op {op!r} to corrupt")


# --- levels "steps" and "run": whole training steps on the device vs the simulator ---
#
# The device runs firmware/qgpt_train.py (the run protocol of firmware/README.md) on
# a packed dataset in a temporary folder; the host runs the same steps with
# qgpt.int_model.IntModel (the code `qgpt train` uses). Compared with ==:
#   steps  the loss_q16 of every step, and after steps 1, 2, 10 and 100 the weight
#          store, the step's gradient, Adam's m and v (the device dumps them: "dump"
#          lines), then the final state hash; built-in names (data/names.txt)
#   run    a whole 1000-step run on makemore's names: every loss_q16, the final state
