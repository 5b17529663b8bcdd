"""Every user-facing device failure: a DeviceError (a ValueError) worded for the user
in one line, which `qgpt` prints as 'qgpt: error: ...' with exit code 2."""


class DeviceError(ValueError):
    """A device problem, worded for the user (one line)."""


class PortError(DeviceError):
    """No such port, port busy, no permission."""


class NotMicroPython(DeviceError):
    """The port answers, but not with a MicroPython raw REPL."""


class UnsupportedBoard(DeviceError):
    """MicroPython version, architecture or .mpy version qgpt cannot use."""


class BoardOutOfMemory(DeviceError):
    """The board raised MemoryError."""


class BoardReset(DeviceError):
    """The board reset while a program ran."""


class BoardLost(DeviceError):
    """The serial connection broke, or the board went silent."""

