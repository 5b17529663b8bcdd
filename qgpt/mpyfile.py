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


def _raw_codes(r, depth, out):
    """Append (depth, kind, start, length) of the raw code at r and of its children, in
    file order (start: the code's first byte in r.data)."""
    kind_len = r.uint()
    kind, has_children, n = _KINDS[kind_len & 3], kind_len & 4, kind_len >> 3
    out.append((depth, kind, r.pos, n))
    r.skip(n)
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
            _raw_codes(r, depth + 1, out)
    if kind != "bytecode" and flags & _SCOPE_VIPERRELOC:
        raise ValueError("relocatable native code (mpy_ld output) is not parsed here")


def parse(data):
    """(qstrs, raw codes) of an .mpy v6 file: qstrs the text of each qstr in the file's
    table (a static qstr as its number, an int), raw codes [(depth, kind, start, length)] of every
    function in file order (depth 0: the module body; kind "bytecode", "native", "viper"
    or "asm"; data[start:start + length] its code). Checks that the parse ends exactly at
    the end of the file."""
    r = _Reader(bytes(data))
    if r.byte() != ord("M") or r.byte() != 6:
        raise ValueError("not an .mpy v6 file")
    features = r.byte()
    r.byte()  # small-int bits
    if features & 0x40:  # arch flags follow (mpy-cross -march-flags)
        r.uint()
    n_qstr, n_obj = r.uint(), r.uint()
    qstrs = []
    for _ in range(n_qstr):
        n = r.uint()
        if n & 1:  # a static qstr is one number; others: the text and a NUL
            qstrs.append(n >> 1)
        else:
            qstrs.append(r.data[r.pos:r.pos + (n >> 1)].decode())
            r.skip((n >> 1) + 1)
    for _ in range(n_obj):
        _skip_obj(r)
    codes = []
    _raw_codes(r, 0, codes)
    if r.pos != len(r.data):
        raise ValueError(f".mpy parse ended at byte {r.pos} of {len(r.data)}")
    return qstrs, codes


def mpy_code_bytes(data):
    """{kind: bytes} of an .mpy v6 file (kinds as `parse` names them, those present): the
    sum of the functions' code lengths by kind (native and viper code is what a board
    allocates as executable memory, MP_PLAT_ALLOC_EXEC)."""
    sizes = {}
    for _, kind, _, n in parse(data)[1]:
        sizes[kind] = sizes.get(kind, 0) + n
    return sizes
