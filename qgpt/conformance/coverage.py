"""Which ops' golden cases reach which firmware function (for mutation testing:
qgpt/conformance/mutants.py judges a mutant only by the ops that reach its function).

coverage_main runs firmware/conform_ops.py on a request under CPython (the int32
target's loader) with a profiler; op_coverage runs it in a subprocess and returns
{(module, function): {ops}}."""

import io
import subprocess
import sys
from pathlib import Path

from qgpt.conformance.build import device_env
from qgpt.conformance.protocol import write_request
from qgpt.firmware_build import FIRMWARE_DIR


def coverage_main(request, firmware_dir):
    """Run firmware/conform_ops.py on a request in this CPython process (the int32
    target's loader) with a profiler; print one JSON object {op: [[module, function],
    ...]}: the firmware functions each op's cases call."""
    import json

    from qgpt.conformance.int32 import _int32_firmware

    _int32_firmware(firmware_dir)
    import contextlib

    import conform_ops

    fw = str(Path(firmware_dir).resolve())
    calls, current = {"*": set()}, ["*"]  # "*": outside an op's handler (every op)

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(fw):
            mod = Path(frame.f_code.co_filename).stem
            calls.setdefault(current[0], set()).add((mod, frame.f_code.co_name))

    def traced(op, handler):
        def run(*args):
            current[0] = op
            try:
                return handler(*args)
            finally:
                current[0] = "*"
        return run

    for op, handler in list(conform_ops.HANDLERS.items()):
        conform_ops.HANDLERS[op] = traced(op, handler)
    sys.setprofile(profile)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            conform_ops.main(str(request))
    finally:
        sys.setprofile(None)
    print(json.dumps({op: sorted(f) for op, f in calls.items()}))


def op_coverage(workdir, requests, firmware_dir=FIRMWARE_DIR):
    """{(module, function): {ops whose cases call it}}, from the first case of each op
    of each group (function-level: the formats take the same calls)."""
    import json

    sample, seen = [], set()
    for fmt, cases, _ in requests:
        for c in cases:
            if (c.op, fmt) not in seen:
                seen.add((c.op, fmt))
                sample.append(c)
    path = Path(workdir) / "coverage.bin"
    write_request(sample, path)
    r = subprocess.run([sys.executable, "-c", "import sys; from qgpt.conformance.coverage "
                        "import coverage_main; coverage_main(sys.argv[1], sys.argv[2])",
                        str(path), str(firmware_dir)], capture_output=True, text=True,
                       env=device_env(firmware_dir), timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"the coverage run failed: {r.stderr.strip()[-500:]}")
    reach = {}
    for op, funcs in json.loads(r.stdout.strip().splitlines()[-1]).items():
        for mod, fn in funcs:
            reach.setdefault((mod, fn), set()).add(op)
    return reach
