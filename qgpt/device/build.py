"""Compiling the firmware for the board: qgpt/firmware_build.py (the code path
`qgpt conformance` builds through too), its errors worded as DeviceError."""

from qgpt import firmware_build as shared
from qgpt.device.errors import DeviceError


def _device_error(f):
    def call(*args, **kw):
        try:
            return f(*args, **kw)
        except shared.FirmwareBuildError as e:
            raise DeviceError(str(e)) from None

    call.__name__, call.__doc__ = f.__name__, f.__doc__
    return call


mpy_cross_path = _device_error(shared.mpy_cross_path)
mpy_cross_version = _device_error(shared.mpy_cross_version)
firmware_modules = _device_error(shared.firmware_modules)
compile_firmware = _device_error(shared.compile_firmware)
