"""The host paths the device commands are given (--out, --dir, --log, --link), checked
before anything is written or the board is touched: a file where a folder is expected,
a folder under a file, a folder qgpt may not write in, a file to read that is not
there. Each is one DeviceError naming the option and the path; a command that fails
after creating folders removes the ones it created while they are still empty."""

import contextlib
import os
from pathlib import Path

from qgpt.device.errors import DeviceError


def _nearest_existing(path):
    """The path itself or its nearest ancestor that exists (a broken symlink counts as
    existing: nothing can be created in its place)."""
    p = path
    while not (p.exists() or p.is_symlink()):
        p = p.parent
    return p


def folder_to_write(path, option):
    """Path(path), after checking that it is, or can be made, a folder qgpt writes in."""
    if not str(path).strip():
        raise DeviceError(f"{option} {str(path)!r}: want a folder name")
    p = Path(path)
    existing = _nearest_existing(p)
    if existing.is_symlink() and not existing.exists():
        raise DeviceError(f"{option} {p}: {existing} is a broken symbolic link")
    if not existing.is_dir():
        if existing == p:
            raise DeviceError(f"{option} {p}: is a file, want a folder")
        raise DeviceError(f"{option} {p}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DeviceError(f"{option} {p}: no permission to write in {existing}")
    return p


def files_to_write(folder, names, option):
    """Refuse a folder where qgpt will write one of the files names in folder."""
    for name in names:
        target = Path(folder) / name
        if target.is_dir():
            raise DeviceError(f"{option} {folder}: {target} is a folder, where qgpt writes the "
                              "file of that name; move it away or choose another " + option)


def make_folder(path, option):
    """Create the folder path (checked by folder_to_write) and its missing parents;
    returns the folders created, deepest first, for remove_if_empty."""
    p = Path(path)
    created = []
    q = p
    while not (q.exists() or q.is_symlink()):
        created.append(q)
        q = q.parent
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DeviceError(f"{option} {p}: cannot create it ({e.strerror or e})") from None
    return created


def remove_if_empty(folders):
    """Remove the folders make_folder created, deepest first, while they are empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def file_to_read(path, option):
    """Path(path), after checking that it is a file qgpt can read."""
    p = Path(path)
    if not p.exists():
        raise DeviceError(f"{option} {p}: no such file")
    if not p.is_file():
        raise DeviceError(f"{option} {p}: is a folder, want a file")
    if not os.access(p, os.R_OK):
        raise DeviceError(f"{option} {p}: no permission to read it")
    return p


def link_to_make(path, option):
    """Path(path), after checking that a symbolic link can be made there: its folder
    exists, and the path is free or an old symbolic link (which is replaced)."""
    if not str(path).strip():
        raise DeviceError(f"{option} {str(path)!r}: want a path for the link")
    p = Path(path)
    if (p.exists() or p.is_symlink()) and not p.is_symlink():
        raise DeviceError(f"{option} {p}: exists and is not a symbolic link; choose another "
                          f"{option}")
    parent = p.parent
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise DeviceError(f"{option} {p}: its folder {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DeviceError(f"{option} {p}: no permission to write in {parent}")
    return p
