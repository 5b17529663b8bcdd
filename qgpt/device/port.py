"""The serial port: does it exist, and why it cannot be opened (busy, permission)."""

import os

from qgpt.device.errors import PortError

BAUD = 115200  # MicroPython's REPL speed on a USB-UART board


def _available_ports():
    try:
        from serial.tools import list_ports

        names = sorted(p.device for p in list_ports.comports())
    except Exception:  # listing is only a hint
        names = []
    return f" (ports with a device: {', '.join(names)})" if names else " (no serial device found)"


def check_port_exists(port):
    """PortError if port is a path that does not exist."""
    if port.startswith("/") and not os.path.exists(port):
        raise PortError(f"no such port {port}{_available_ports()}")


def diagnose_port(port):
    """The PortError that explains why the port cannot be opened (or None if it can)."""
    import serial

    check_port_exists(port)
    try:
        s = serial.Serial(port, BAUD, exclusive=True, timeout=0)
    except serial.SerialException as e:
        text = str(e)
        if "exclusively lock" in text or "busy" in text.lower():
            return PortError(f"port {port} is busy: another program (mpremote, a serial "
                             "monitor, another qgpt) has it open; close it and retry")
        if "ermission" in text:
            return PortError(f"no permission to open {port}: add yourself to the port's group "
                             "(often dialout: sudo usermod -aG dialout $USER, then log in again)")
        if "No such file" in text or "FileNotFound" in text:
            return PortError(f"no such port {port}{_available_ports()}")
        return PortError(f"cannot open {port}: {text}")
    s.close()
    return None
