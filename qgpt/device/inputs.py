"""What a device run depends on, so that a resume continues the same run or refuses.

A run's inputs: its settings (format, rounding, master, lr, seed, steps), the dataset
on the board (names.bin, by the size and CRC32 of its bytes: the packed names
themselves, not the path they came from) and the firmware the board imports (each
module's .py if there is one, else its .mpy, by size and CRC32). `train` records them
on the board (qgpt-run.json) when a run starts; a resume, and a redeploy that would
keep the run's checkpoint, compare them with what the board holds now (or will hold)
and name what changed.
"""

import zlib

from qgpt.device.layout import RUN_KEYS

SETTINGS = RUN_KEYS + ("steps", "policy")  # policy: the config's object (absent before it)


def on_board(board, cfg, modules):
    """The inputs the board holds now: cfg is its qgpt.json, modules the firmware
    modules of its deploy record."""
    names = [f"{m}.py" for m in modules] + [f"{m}.mpy" for m in modules] + [cfg["data"]]
    stats = board.crcs(names)
    firmware = {}
    for m in modules:
        stat = stats.get(f"{m}.py") or stats.get(f"{m}.mpy")
        firmware[m] = list(stat) if stat else None
    data = stats.get(cfg["data"])
    return {"settings": {k: cfg.get(k) for k in SETTINGS}, "data": list(data) if data else None,
            "firmware": firmware}


def from_host(cfg, packed, modules):
    """The inputs a deploy puts on the board: cfg its qgpt.json, packed the names.bin
    bytes, modules {name: .mpy bytes}."""
    return {"settings": {k: cfg.get(k) for k in SETTINGS},
            "data": [len(packed), zlib.crc32(packed)],
            "firmware": {m: [len(b), zlib.crc32(b)] for m, b in modules.items()}}


def _stat(stat):
    return "missing" if not stat else f"{stat[0]} bytes, CRC32 {stat[1] & 0xFFFFFFFF:08x}"


def changes(started, now, settings=SETTINGS):
    """What differs between the inputs a run started with and now, one phrase each
    (empty when nothing did); settings: the settings to compare."""
    found = []
    old, new = started.get("settings", {}), now.get("settings", {})
    moved = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in settings
             if k in old and old.get(k) != new.get(k)]
    if moved:
        found.append("the settings (" + ", ".join(moved) + ")")
    if started.get("data") != now.get("data"):
        found.append(f"the dataset (names.bin: {_stat(now.get('data'))}; the run started "
                     f"with {_stat(started.get('data'))})")
    old_fw, new_fw = started.get("firmware") or {}, now.get("firmware") or {}
    modules = sorted(m for m in set(old_fw) | set(new_fw) if old_fw.get(m) != new_fw.get(m))
    if modules:
        found.append(f"the firmware ({', '.join(modules)})")
    return found
