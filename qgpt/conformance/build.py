"""The firmware a target runs: which MicroPython, what it reports, and the build for it.

The unix target is asked what it is (sys.implementation.name and _mpy) before any
level runs: a program that is not a MicroPython, or that does not start, is one
SetupError naming it. The firmware is then compiled by mpy-cross for the
architecture the target reports, through qgpt/firmware_build.py (the code path
`qgpt device` uses for a board), or copied as sources (build "py").
"""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qgpt.firmware_build import (
    FIRMWARE_DIR,
    FirmwareBuildError,
    check_arch,
    compile_firmware,
    decode_mpy,
    firmware_modules,
    mpy_cross_version,
)

PROBE = "import sys; print('qgpt-probe', sys.implementation.name, " \
        "getattr(sys.implementation, '_mpy', -1))"
PROBE_TIMEOUT = 60  # seconds
HEAPSIZE_PY = "128K"  # ops with --build py: the port compiles kernels.py itself, which takes more


class SetupError(ValueError):
    """The target cannot run, or the firmware cannot be built for it (one line)."""


@dataclass(frozen=True)
class TargetInfo:
    micropython: str
    mpy: int  # sys.implementation._mpy

    @property
    def arch(self):
        return decode_mpy(self.mpy)[2]

    @property
    def mpy_version(self):
        return decode_mpy(self.mpy)[:2]


def default_micropython():
    """The unix port next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "micropython"
    return str(here) if here.exists() else (shutil.which("micropython") or "micropython")


def default_mpy_cross():
    here = Path(sys.executable).parent / "mpy-cross"
    return str(here) if here.exists() else shutil.which("mpy-cross")


_probed = {}


def probe(micropython=None):
    """What the MicroPython at this path reports (TargetInfo), asked once per path;
    SetupError if it cannot run or is not a MicroPython with native code."""
    micropython = micropython or default_micropython()
    if micropython in _probed:
        return _probed[micropython]
    where = f"--micropython {micropython}"
    try:
        r = subprocess.run([micropython, "-c", PROBE], capture_output=True, text=True,
                           timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SetupError(f"{where}: no answer within {PROBE_TIMEOUT} s") from None
    except OSError as e:
        raise SetupError(f"{where}: cannot run it ({e.strerror or e}); give the path of a "
                         "MicroPython unix port") from None
    words = next((ln.split() for ln in r.stdout.splitlines() if ln.startswith("qgpt-probe")),
                 None)
    if r.returncode != 0 or not words or len(words) != 3:
        why = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1][:200]
        raise SetupError(f"{where}: does not run as a MicroPython ({why})")
    if words[1] != "micropython":
        raise SetupError(f"{where}: is {words[1]}, not MicroPython; give the path of a "
                         "MicroPython unix port")
    info = TargetInfo(micropython, int(words[2]))
    if info.mpy < 0:
        raise SetupError(f"{where}: reports no sys.implementation._mpy (no .mpy support)")
    _probed[micropython] = info
    return info


def check_build(info, build="mpy"):
    """SetupError unless the firmware can be built (build "mpy") for the target: its
    architecture, and the .mpy version mpy-cross writes against the one it loads."""
    if build == "py":
        return
    target = f"the MicroPython at {info.micropython}"
    try:
        check_arch(info.arch, target)
        writes = mpy_cross_version()
    except FirmwareBuildError as e:
        raise SetupError(str(e)) from None
    if writes[0] != info.mpy_version[0] or writes[1] > info.mpy_version[1]:
        raise SetupError(f"mpy-cross writes .mpy v{writes[0]}.{writes[1]}, {target} loads "
                         f"v{info.mpy_version[0]}.{info.mpy_version[1]}: install an mpy-cross "
                         "of the same MicroPython version")


def build_firmware(dest, build="mpy", arch=None, source_dir=FIRMWARE_DIR):
    """Put the device side in dest: every firmware module compiled by mpy-cross for
    arch (default: the architecture the default MicroPython reports), or the .py
    sources (build="py", compiled by the port itself)."""
    dest = Path(dest)
    if build == "py":
        for mod in firmware_modules(source_dir):
            shutil.copy(Path(source_dir) / f"{mod}.py", dest / f"{mod}.py")
        return
    arch = arch or probe().arch
    try:
        compiled = compile_firmware(arch, source_dir, jobs=2)
    except FirmwareBuildError as e:
        raise SetupError(str(e)) from None
    for mod, data in compiled.items():
        (dest / f"{mod}.mpy").write_bytes(data)


def device_env(firmware_dir):
    """The environment of a device process: MICROPYPATH the firmware (the unix port),
    and this checkout first on PYTHONPATH (the int32 target runs qgpt's emulator)."""
    repo = str(Path(__file__).resolve().parent.parent.parent)
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, MICROPYPATH=str(firmware_dir),
                PYTHONPATH=repo + (os.pathsep + path if path else ""))


def firmware_build(dest, target="unix", build="mpy", source_dir=FIRMWARE_DIR,
                   micropython=None):
    """The firmware folder a target runs: for the unix port, built into dest for the
    architecture its MicroPython reports; for int32, the sources themselves."""
    if target == "int32":
        return Path(source_dir)
    info = probe(micropython)
    check_build(info, build)
    Path(dest).mkdir(parents=True, exist_ok=True)
    build_firmware(dest, build, info.arch, source_dir=source_dir)
    return Path(dest)
