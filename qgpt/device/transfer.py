"""Files to and from the board, as base64 chunks through the raw REPL: each lands
through NAME.tmp and a rename, and is checked by its size and CRC32 on both sides."""

import ast
import base64
import json
import zlib

from qgpt.device.errors import DeviceError
from qgpt.device.identity import BoardInfo
from qgpt.device.layout import BOARD_CKPT
from qgpt.device.session import Session, py_str

CHUNK = 3072  # bytes per file chunk (4 KB of base64 source on the board)

# Board-side helpers, defined once per connection (after its soft reset).
HELPERS = """\
import os, binascii, struct
def _q_crc(p, end=-1):
    try:
        size = os.stat(p)[6]
    except OSError:
        return None
    left = size if end < 0 else min(end, size)
    c = 0
    b = bytearray(512)
    m = memoryview(b)
    with open(p, 'rb') as f:
        while left > 0:
            k = f.readinto(b)
            if not k:
                break
            k = min(k, left)
            c = binascii.crc32(m[:k], c)
            left -= k
    return size, c
def _q_put(p, s):
    with open(p, 'ab') as f:
        f.write(binascii.a2b_base64(s))
def _q_rm(p):
    try:
        os.remove(p)
    except OSError:
        pass
def _q_commit(tmp, p):
    try:
        os.rename(tmp, p)
    except OSError:
        os.remove(p)
        os.rename(tmp, p)
def _q_cat(p):
    with open(p, 'rb') as f:
        while True:
            b = f.read(384)
            if not b:
                break
            print(binascii.b2a_base64(b).decode().strip())
def _q_ckpt(p):
    r = _q_crc(p)
    if r is None:
        print('none')
        return
    size = r[0]
    with open(p, 'rb') as f:
        h = f.read(10)
        if size < 14 or h[:4] != b'QGPT':
            print('bad', size)
            return
        n = struct.unpack('<I', h[6:10])[0]
        hdr = f.read(n) if 10 + n <= size - 4 and n < 16384 else b'{}'
        f.seek(size - 4)
        want = struct.unpack('<I', f.read(4))[0]
    got = _q_crc(p, size - 4)[1]
    print('ok', size, 1 if got == want else 0, struct.unpack('<H', h[4:6])[0])
    print(hdr.decode())
"""

INFO = """\
import sys, gc
gc.collect()
try:
    _s = os.statvfs('.')
    _fs = _s[0] * _s[3]
except Exception:
    _fs = -1
print(repr((sys.implementation.name, tuple(sys.implementation.version),
            getattr(sys.implementation, '_mpy', 0), sys.platform,
            getattr(sys.implementation, '_machine', ''), gc.mem_free(),
            gc.mem_free() + gc.mem_alloc(), _fs)))
"""


class Board(Session):
    """A MicroPython board on a serial port, driven through mpremote's SerialTransport.

    with Board(port) as b: b.info(), b.exec(code), b.run(code, on_line), b.put(path,
    data), b.get(path), ...; opening soft-resets the board and enters its raw REPL."""

    def _ensure_helpers(self):
        if not self._helpers:
            self.exec(HELPERS)
            self._helpers = True

    def info(self):
        self._ensure_helpers()
        return BoardInfo(*ast.literal_eval(self.exec(INFO).strip()))

    # files (paths relative to the board's current folder)

    def crc(self, path):
        """(size, CRC32) of a board file, or None if there is none."""
        self._ensure_helpers()
        r = self.eval(f"_q_crc({py_str(path)})")
        return tuple(r) if r else None

    def crcs(self, paths):
        """{path: (size, CRC32) or None} of several board files, in one program."""
        self._ensure_helpers()
        found = self.eval("[_q_crc(p) for p in " + repr([str(p) for p in paths]) + "]")
        return {p: tuple(r) if r else None for p, r in zip(paths, found, strict=True)}

    def listdir(self):
        return self.eval("os.listdir()")

    def remove(self, path):
        self._ensure_helpers()
        self.exec(f"_q_rm({py_str(path)})")

    def put(self, path, data):
        """Write data to path through path.tmp and a rename; checks the CRC32 first.
        Returns False when the board already held exactly these bytes."""
        self._ensure_helpers()
        want = (len(data), zlib.crc32(data))
        if self.crc(path) == want:
            return False
        tmp = path + ".tmp"
        self.exec(f"_q_rm({py_str(tmp)})")
        if not data:
            self.exec(f"open({py_str(tmp)}, 'wb').close()")
        for i in range(0, len(data), CHUNK):
            b64 = base64.b64encode(data[i : i + CHUNK]).decode()
            self.exec(f"_q_put({py_str(tmp)}, '{b64}')")
        got = self.crc(tmp)
        if got != want:
            self.exec(f"_q_rm({py_str(tmp)})")
            raise DeviceError(f"copying {path} to the board failed: it holds {got} "
                              f"(size, CRC32), not {want}")
        self.exec(f"_q_commit({py_str(tmp)}, {py_str(path)})")
        return True

    def get(self, path):
        """The bytes of a board file, or None if there is none; checked by CRC32."""
        self._ensure_helpers()
        stat = self.crc(path)
        if stat is None:
            return None
        text = self.exec(f"_q_cat({py_str(path)})", idle_timeout=60.0)
        data = base64.b64decode("".join(text.split()))
        if (len(data), zlib.crc32(data)) != stat:
            raise DeviceError(f"reading {path} from the board failed (size or CRC32 mismatch); "
                              "retry")
        return data

    def get_json(self, path):
        data = self.get(path)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise DeviceError(f"{self.port}:{path} is not valid JSON; deploy again") from None

    def put_json(self, path, obj):
        return self.put(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())

    def checkpoint_info(self, path=BOARD_CKPT):
        """None, or {"size", "valid", "version", "meta"} of the board's checkpoint, read on
        the board (its header and CRC32) without bringing it over."""
        self._ensure_helpers()
        lines = self.exec(f"_q_ckpt({py_str(path)})").splitlines()
        if not lines or lines[0] == "none":
            return None
        head = lines[0].split()
        if head[0] == "bad":
            return {"size": int(head[1]), "valid": False, "version": None, "meta": {}}
        try:
            header = json.loads(lines[1]) if len(lines) > 1 else {}
        except ValueError:
            header = {}
        meta = header.get("meta") if isinstance(header, dict) else None
        meta = meta if isinstance(meta, dict) else {}  # pull checks every field
        if not isinstance(meta.get("config"), dict):
            meta["config"] = {}
        return {"size": int(head[1]), "valid": head[2] == "1", "version": int(head[3]),
                "meta": meta}

