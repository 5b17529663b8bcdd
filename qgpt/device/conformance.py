"""qgpt device conformance: qgpt.conformance's op level run on the board (its golden
cases, request file, reply parser, comparison and report)."""

import contextlib
import sys
import tempfile
import time
from pathlib import Path

from qgpt.device.errors import DeviceError
from qgpt.device.identity import check_supported
from qgpt.device.layout import BOARD_CONFIG, BOARD_REQUEST
from qgpt.device.session import CONNECT_TIMEOUT, classify_failure, py_str
from qgpt.device.transfer import Board


def conformance(port, formats=None, seed=0, timeout=CONNECT_TIMEOUT, idle_timeout=300.0,
                out=None):
    """The op-level conformance on the board: the same golden cases and comparison as
    the unix-port run of qgpt/conformance/ops.py, the request copied to the board and
    firmware/conform_ops.py run there. Returns the OpsReport."""
    from qgpt import conformance as conf

    out = out or sys.stdout
    t0 = time.time()
    with Board(port, timeout) as board:
        info = board.info()
        check_supported(info)
        cfg = board.get_json(BOARD_CONFIG) if board.crc(BOARD_CONFIG) else {}
        if board.crc("conform_ops.mpy") is None and board.crc("conform_ops.py") is None:
            raise DeviceError(f"the board has no conform_ops module: run qgpt device deploy "
                              f"--port {port} first")
        formats = list(formats or [(cfg or {}).get("format", "q4.12")])
        report = conf.OpsReport(cases=[], heapsize=f"{info.heap_total // 1024}K")
        try:
            for fmt in [conf.NO_FORMAT] + [f for f in formats if f != conf.NO_FORMAT]:
                group = conf.build_cases(fmt, seed, exhaustive=False)  # serial: no MBs
                with tempfile.TemporaryDirectory(prefix="qgpt-conform-") as tmp:
                    request = Path(tmp) / "request.bin"
                    conf.write_request(group, request)
                    board.put(BOARD_REQUEST, request.read_bytes())
                board.enter_raw_repl(soft_reset=True)  # fresh heap (and IRAM) for each group
                lines, err = board.run(f"import conform_ops\nconform_ops.main("
                                       f"{py_str(BOARD_REQUEST)})\n", idle_timeout=idle_timeout)
                banner, results, errors, heap = conf.parse_reply("\n".join(lines))
                if not results and not errors and (err.strip() or not banner):
                    # nothing ran: a setup failure, one line, not a mismatch per case
                    why = (classify_failure(err, port) if err.strip() else
                           DeviceError(f"conform_ops printed no banner ({len(lines)} lines)"))
                    raise type(why)(f"the op conformance did not run on the board "
                                    f"({'format-free' if fmt == conf.NO_FORMAT else fmt} "
                                    f"cases): {why}") from None
                if err.strip() and not errors:
                    why = classify_failure(err, port)  # Mismatch says "the device failed: "
                    errors = {i: str(why) for i in range(len(group)) if i not in results}
                device = banner.split(" ", 2)[-1] if banner else "no banner"
                report.device = f"{device} on {port}"
                if heap and min(heap.values()) >= 0:
                    low = min(heap.values())
                    report.heap_free_min = low if report.heap_free_min is None else min(
                        low, report.heap_free_min)
                report.cases += group
                conf.compare(group, results, errors, report, fmt)
        finally:
            with contextlib.suppress(DeviceError):
                board.remove(BOARD_REQUEST)
    report.seconds = time.time() - t0
    print(report.summary(), file=out)
    for m in report.mismatches[:20]:
        print(m, file=out)
    if len(report.mismatches) > 20:
        print(f"... {len(report.mismatches) - 20} more listed mismatches", file=out)
    return report
