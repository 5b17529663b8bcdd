"""qgpt device flash: check an ESP firmware image against --chip, then erase and write
it with esptool's own command line (esptool.main), in this process."""

from pathlib import Path

from qgpt.device.errors import DeviceError, PortError
from qgpt.device.port import check_port_exists

ESP_IMAGE_MAGIC = 0xE9
MAX_IMAGE = 16 * 1024 * 1024  # the largest flash an ESP32 addresses


def esp_chips():
    """{esptool chip name: its class} for the chips whose images carry a chip id."""
    from esptool.targets import CHIP_DEFS

    return {k: c for k, c in CHIP_DEFS.items() if getattr(c, "IMAGE_CHIP_ID", None) is not None}


def check_image(path, chip="esp32"):
    """Check an ESP firmware image against --chip: size, magic 0xE9, the chip id in its
    extended header. Returns the flash offset to write it at (0x1000 on the ESP32)."""
    chips = esp_chips()
    if chip not in chips:
        raise DeviceError(f"--chip {chip}: want one of {', '.join(sorted(chips))}")
    path = Path(path)
    if not path.is_file():
        raise DeviceError(f"{path}: no such firmware file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(24)
    if size < 24 or size > MAX_IMAGE:
        raise DeviceError(f"{path}: {size} bytes is not the size of an ESP firmware image")
    if head[:4] == b"\x7fELF":
        raise DeviceError(f"{path} is an ELF file: flash the .bin image, not the .elf")
    if head[:4] == b"UF2\n":
        raise DeviceError(f"{path} is a UF2 file: flash the .bin image with esptool")
    if head[0] != ESP_IMAGE_MAGIC:
        raise DeviceError(f"{path} does not start with an ESP image (magic 0x{head[0]:02x}, want "
                          "0xe9): is it a MicroPython .bin for an ESP32?")
    image_chip = int.from_bytes(head[12:14], "little")  # extended header: chip id
    by_id = {c.IMAGE_CHIP_ID: k for k, c in chips.items()}
    if image_chip != chips[chip].IMAGE_CHIP_ID:
        other = by_id.get(image_chip, f"unknown chip id {image_chip}")
        raise DeviceError(f"{path} is an image for {other}, not {chip}: download the "
                          f"MicroPython firmware for your board, or pass --chip {other}")
    return chips[chip].BOOTLOADER_FLASH_OFFSET


def _esptool(argv):
    """esptool's own command line, in this process."""
    import esptool

    try:
        esptool.main(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            raise DeviceError(f"esptool {' '.join(argv)} failed (exit code {e.code})") from None
    except Exception as e:  # esptool's FatalError, pyserial's SerialException
        text = " ".join(str(e).split())
        if "exclusively lock" in text or "busy" in text.lower():
            port = argv[argv.index("--port") + 1]
            raise PortError(f"port {port} is busy: another program has it open") from None
        raise DeviceError(f"esptool: {text}") from None


def flash(port, firmware, chip="esp32", baud=460800, log=print):
    """Check the image and the port, then erase the flash and write MicroPython."""
    import esptool

    offset = check_image(firmware, chip)
    check_port_exists(port)
    dash = int(esptool.__version__.split(".")[0]) >= 5  # esptool 5 names commands with dashes
    erase, write = ("erase-flash", "write-flash") if dash else ("erase_flash", "write_flash")
    log(f"flashing {firmware} to the {chip} on {port} at 0x{offset:x} (esptool "
        f"{esptool.__version__}: the chip is checked on connecting)")
    _esptool(["--chip", chip, "--port", port, erase])
    _esptool(["--chip", chip, "--port", port, "--baud", str(baud), write, "-z", f"0x{offset:x}",
              str(firmware)])
    log(f"flashed; next: qgpt device deploy --port {port}")
