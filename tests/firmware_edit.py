"""Copies of firmware/ with one source line edited, for the tests that show a check
catches a wrong integer by running the copy."""

import shutil

from qgpt.firmware_build import FIRMWARE_DIR


def edited_firmware(tmp_path, old, new, module="kernels.py", count=1):
    """tmp_path/firmware: a copy of firmware/ whose `module` has old (found exactly count
    times: the test names a line that still exists) replaced by new."""
    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, fw)
    src = (fw / module).read_text()
    assert src.count(old) == count, f"{module} changed: update {old!r}"
    (fw / module).write_text(src.replace(old, new))
    return fw
