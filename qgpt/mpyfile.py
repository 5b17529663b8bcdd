"""How much code an .mpy file holds, by kind: bytecode, and the machine code of viper
and native functions (what a board allocates as executable memory). Reads the format
MicroPython's py/persistentcode.c writes and loads, .mpy version 6 (mpy-cross 1.23 and
later).
"""

_KINDS = ("bytecode", "native", "viper", "asm")  # kind_len & 3
_OBJ_FUN_TABLE, _OBJ_ELLIPSIS, _OBJ_STR, _OBJ_BYTES, _OBJ_TUPLE = 0, 4, 5, 6, 10
_SCOPE_VIPERRELOC, _SCOPE_VIPERRODATA, _SCOPE_VIPERBSS = 0x10, 0x20, 0x40


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def skip(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated .mpy")
        self.pos += n

    def uint(self):
        n = 0
        while True:
            b = self.byte()
            n = (n << 7) | (b & 0x7F)
            if not b & 0x80:
                return n


def _skip_obj(r):
    kind = r.byte()
    if kind <= _OBJ_ELLIPSIS:  # fun table, None, False, True, Ellipsis: no payload
        return
    n = r.uint()
    if kind == _OBJ_TUPLE:
        for _ in range(n):
            _skip_obj(r)
        return
    r.skip(n + (1 if kind in (_OBJ_STR, _OBJ_BYTES) else 0))  # str/bytes: a NUL follows


def _raw_code(r, sizes):
    kind_len = r.uint()
    kind, has_children, n = _KINDS[kind_len & 3], kind_len & 4, kind_len >> 3
    r.skip(n)
    sizes[kind] = sizes.get(kind, 0) + n
    flags = 0
    if kind == "native":
        r.uint()  # prelude offset (the prelude is counted: it sits in the same allocation)
    elif kind in ("viper", "asm"):
        flags = r.uint()
        if kind == "asm":
            r.uint()
            r.uint()
    if kind == "viper":
        rodata = r.uint() if flags & _SCOPE_VIPERRODATA else 0
        if flags & _SCOPE_VIPERBSS:
            r.uint()
        r.skip(rodata)
    if has_children:
        for _ in range(r.uint()):
            _raw_code(r, sizes)
    if kind != "bytecode" and flags & _SCOPE_VIPERRELOC:
        raise ValueError("relocatable native code (mpy_ld output) is not parsed here")


def mpy_code_bytes(data):
    """{"bytecode": bytes, "native": bytes, "viper": bytes, "asm": bytes} of an .mpy v6
    file: the sum of the functions' code lengths by kind (native and viper code is what
    a board allocates as executable memory, MP_PLAT_ALLOC_EXEC). Checks that the parse
    ends exactly at the end of the file."""
    r = _Reader(bytes(data))
    if r.byte() != ord("M") or r.byte() != 6:
        raise ValueError("not an .mpy v6 file")
    features = r.byte()
    r.byte()  # small-int bits
    if features & 0x40:  # arch flags follow (mpy-cross -march-flags)
        r.uint()
    n_qstr, n_obj = r.uint(), r.uint()
    for _ in range(n_qstr):
        n = r.uint()
        if not n & 1:  # static qstrs are one number; others: the text and a NUL
            r.skip((n >> 1) + 1)
    for _ in range(n_obj):
        _skip_obj(r)
    sizes = {}
    _raw_code(r, sizes)
    if r.pos != len(r.data):
        raise ValueError(f".mpy parse ended at byte {r.pos} of {len(r.data)}")
    return sizes
