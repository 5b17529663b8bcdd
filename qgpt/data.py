"""Names datasets: loading, checking, microgpt's tokenizer and the validation split."""

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

from qgpt.params import BLOCK, BOS

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "names.txt"
VAL_BUCKETS = 10  # one name in VAL_BUCKETS goes to validation
SHOWN_CHARS = 40  # an error message quotes at most this much of a name


class DataError(ValueError):
    """A dataset problem, worded for the user."""


def encode(name):
    """microgpt's ids: [BOS] + a..z -> 0..25 + [BOS]."""
    return [BOS] + [ord(c) - ord("a") for c in name] + [BOS]


def decode(ids):
    return "".join(chr(ord("a") + i) for i in ids if i != BOS)


def is_validation(name):
    """The stable split: a hash of the name itself, not its position in the file."""
    return zlib.crc32(name.encode()) % VAL_BUCKETS == 0


def names_sha256(names):
    """The identity of a dataset: SHA-256 of its names (after cleaning), in file order,
    one per line. A run records it; a resume refuses a dataset whose names changed."""
    return hashlib.sha256("".join(n + "\n" for n in names).encode()).hexdigest()


def _shown(name):
    """repr(name), cut to SHOWN_CHARS characters: an error line stays one short line."""
    if len(name) <= SHOWN_CHARS:
        return repr(name)
    return f"{name[:SHOWN_CHARS]!r}..."


@dataclass(frozen=True)
class Dataset:
    path: str
    train: tuple  # names, in file order
    val: tuple  # may be empty for a tiny dataset: then there is no validation NLL
    dropped: int  # names dropped by --lowercase / --skip-long
    sha256: str  # names_sha256 of the kept names in file order (train and val interleaved)


def _check_name(name, lineno, path, lowercase, skip_long):
    """The name to keep (or None to drop it); raises DataError on a bad one."""
    if lowercase:
        name = name.lower()
        if not all("a" <= c <= "z" for c in name):
            return None
    for c in name:
        if not "a" <= c <= "z":
            raise DataError(
                f"{path}:{lineno}: character {c!r} in {_shown(name)} is outside a-z "
                "(pass --lowercase to lowercase names and drop the others)"
            )
    if len(name) > BLOCK - 1:
        if skip_long:
            return None
        raise DataError(
            f"{path}:{lineno}: {_shown(name)} has {len(name)} characters, the model takes "
            f"at most {BLOCK - 1} (pass --skip-long to skip such names)"
        )
    return name


def load(path=None, lowercase=False, skip_long=False):
    """Read a newline-separated names file and split it into train and validation."""
    path = Path(path) if path is not None else DEFAULT_DATA
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (give a names file with --data PATH)") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a names file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror})") from None
    names, dropped = [], 0
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        name = _check_name(line, lineno, path, lowercase, skip_long)
        if name is None:
            dropped += 1
        else:
            names.append(name)
    if not names:
        raise DataError(f"{path}: holds no names (want one name per line)")
    train = tuple(n for n in names if not is_validation(n))
    val = tuple(n for n in names if is_validation(n))
    if not train:
        raise DataError(f"{path}: every name fell in the validation split; give more names")
    return Dataset(str(path), train, val, dropped, names_sha256(names))
