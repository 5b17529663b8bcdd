"""The int32 target: the firmware run by CPython, every viper intermediate checked.

The x86-64 unix port computes viper ints in 64 bits, so it can never show an
int32 overflow. This target executes the same firmware files and the same
driver in CPython, with each viper function rewritten so that every +, -, *,
<<, >>, //, &, |, ^ goes through _Int32.op: the result must fit int32, shift
counts must lie in 0..31, and // must have a positive divisor and operands
within +-2**30. ptr32 loads are signed and ptr16/ptr8 loads unsigned, as on a
32-bit board; int(ptr16(buf)) + offset and ptr16(address) work on registered addresses
(_Ptr). Two idioms wrap by design and are recognised by their shape:
the sign extension (x ^ s32) - s32 (the identity on 32 bits) and the hash's
(x * K) & M30 (only the low 30 bits matter); `one << 31` gives -2**31.
"""

import ast
import sys
import time
from pathlib import Path

from qgpt.firmware_build import FIRMWARE_DIR


class Int32Overflow(ArithmeticError):
    """A viper intermediate that would not fit a 32-bit board's int."""


class _Ptr:
    """viper's ptr8/ptr16/ptr32 on a 32-bit board: loads of 8 and 16 bits are unsigned,
    of 32 bits signed; a store keeps the low bits. Pointer arithmetic as the kernels write
    it, ptr16(int(ptr16(buf)) + offset): int(p) of a pointer made from a buffer registers
    the buffer under a slot number times 2**20 (below 2**30, like a board's RAM addresses
    within int32), once per pointer; ptrN(address) views the registered buffer from that
    byte on, and int() of it gives that address back. Slots are reused round robin, so an
    address must be used within its kernel call."""

    SLOT = 1 << 20
    SLOTS = 1000
    _slots = {}
    _next = [0]
    _pinned = [SLOTS]  # uctypes.addressof's slots, above the reused ones: never reused

    @staticmethod
    def addressof(buf):
        """uctypes.addressof: the buffer registered for good (the firmware keeps the state
        block's addresses for the whole run, layout.views)."""
        _Ptr._pinned[0] += 1
        addr = _Ptr._pinned[0] * _Ptr.SLOT
        _Ptr._slots[addr] = memoryview(buf).cast("B")
        return addr

    @staticmethod
    def bytearray_at(addr, n):
        """uctypes.bytearray_at: n bytes of a registered buffer from an address on."""
        base = addr - addr % _Ptr.SLOT
        return _Ptr._slots[base][addr - base : addr - base + n]

    def __init__(self, buf, code, bits):
        self.addr = None
        if isinstance(buf, int):  # an address: int(ptrN(...)) + a byte offset
            base = buf - buf % _Ptr.SLOT
            raw = _Ptr._slots[base][buf - base:]
            size = bits // 8
            raw = raw[: len(raw) - len(raw) % size]
            self.addr = buf
        else:
            raw = memoryview(buf).cast("B")
        self.raw = raw
        self.mv = raw.cast(code)
        self.mask = (1 << bits) - 1
        self.bits = bits

    def __int__(self):
        if self.addr is None:
            slot = _Ptr._next[0] % _Ptr.SLOTS + 1
            _Ptr._next[0] += 1
            self.addr = slot * _Ptr.SLOT
            _Ptr._slots[self.addr] = self.raw
        return self.addr

    def __getitem__(self, i):
        return self.mv[i]

    def __setitem__(self, i, v):
        if self.bits == 32:
            if not -(2**31) <= v < 2**31:
                raise Int32Overflow(f"ptr32 store of {v}")
            self.mv[i] = v
        else:
            self.mv[i] = v & self.mask


_INT32_OPS = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mult": lambda a, b: a * b,
    "LShift": lambda a, b: a << b, "RShift": lambda a, b: a >> b,
    "BitAnd": lambda a, b: a & b, "BitOr": lambda a, b: a | b, "BitXor": lambda a, b: a ^ b,
    "FloorDiv": lambda a, b: a // b, "Mod": lambda a, b: a % b,
}


class _Int32:
    """The checked operations the rewritten viper code calls."""

    @staticmethod
    def op(name, a, b, where):
        if name in ("LShift", "RShift") and not 0 <= b <= 31:
            raise Int32Overflow(f"{where}: shift count {b}")
        if name in ("FloorDiv", "Mod") and not (0 < b <= 2**30 and -(2**30) <= a <= 2**30):
            raise Int32Overflow(f"{where}: {a} // {b} (want a positive divisor, both within 2**30)")
        r = _INT32_OPS[name](a, b)
        if name == "LShift" and r == 2**31:
            return -(2**31)  # one << 31: the sign bit, as a 32-bit word has it
        if not -(2**31) <= r < 2**31:
            raise Int32Overflow(f"{where}: {a} {name} {b} = {r} does not fit int32")
        return r

    @staticmethod
    def sext(x, where):  # (x ^ s32) - s32: the identity on a 32-bit word
        if not -(2**31) <= x < 2**31:
            raise Int32Overflow(f"{where}: {x} does not fit int32")
        return x

    @staticmethod
    def mulmask(a, b, mask, where):  # (a * b) & mask: the low bits survive a wrap
        if not (0 <= mask < 2**31 and -(2**31) <= a < 2**31 and -(2**31) <= b < 2**31):
            raise Int32Overflow(f"{where}: ({a} * {b}) & {mask}")
        return (a * b) & mask

    @staticmethod
    def arg(x, name, where):  # an int argument: a 32-bit viper function truncates it
        if not -(2**31) <= x < 2**31:
            raise Int32Overflow(f"{where}: argument {name} = {x} does not fit int32")
        return x


class _ViperToInt32(ast.NodeTransformer):
    def __init__(self, filename):
        self.filename = filename
        self.fn = ""

    def _where(self, node):
        return ast.Constant(f"{self.filename}:{node.lineno} in {self.fn}")

    def _call(self, method, args, node):
        f = ast.Attribute(ast.Name("_Int32", ast.Load()), method, ast.Load())
        return ast.copy_location(ast.Call(f, args + [self._where(node)], []), node)

    def visit_FunctionDef(self, node):
        names = [getattr(d, "attr", getattr(d, "id", "")) for d in node.decorator_list]
        if "viper" not in names:
            return node  # plain Python: unbounded ints, as on the device
        self.fn = node.name
        node.decorator_list = []
        self.generic_visit(node)
        checks = [ast.Assign([ast.Name(a.arg, ast.Store())],
                             self._call("arg", [ast.Name(a.arg, ast.Load()), ast.Constant(a.arg)],
                                        node))
                  for a in node.args.args
                  if isinstance(a.annotation, ast.Name) and a.annotation.id == "int"]
        node.body = checks + node.body
        return ast.fix_missing_locations(node)

    def visit_BinOp(self, node):
        left, right = node.left, node.right
        if (isinstance(node.op, ast.Sub) and isinstance(left, ast.BinOp)
                and isinstance(left.op, ast.BitXor) and isinstance(right, ast.Name)
                and isinstance(left.right, ast.Name) and left.right.id == right.id):
            return self._call("sext", [self.visit(left.left)], node)
        if (isinstance(node.op, ast.BitAnd) and isinstance(left, ast.BinOp)
                and isinstance(left.op, ast.Mult)):
            return self._call("mulmask", [self.visit(left.left), self.visit(left.right),
                                          self.visit(right)], node)
        self.generic_visit(node)
        return self._call("op", [ast.Constant(type(node.op).__name__), node.left, node.right],
                          node)

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        load = ast.Name(node.target.id, ast.Load())
        value = self._call("op", [ast.Constant(type(node.op).__name__), load, node.value], node)
        return ast.copy_location(ast.Assign([node.target], value), node)


def _load_int32_module(name, path, module=None):
    """Import firmware/NAME.py into sys.modules (into module, if given) with its viper
    functions checked."""
    import types

    tree = _ViperToInt32(path.name).visit(ast.parse(path.read_text(), str(path)))
    module = module or types.ModuleType(name)
    module.__file__ = str(path)
    module.__dict__.update({
        "ptr8": lambda b: _Ptr(b, "B", 8), "ptr16": lambda b: _Ptr(b, "H", 16),
        "ptr32": lambda b: _Ptr(b, "i", 32), "_Int32": _Int32})
    sys.modules[name] = module
    exec(compile(ast.fix_missing_locations(tree), str(path), "exec"), module.__dict__)
    return module


class _Int32Finder:
    """Imports firmware modules (also those the firmware imports lazily, or drops from
    sys.modules and imports again) with their viper functions int32-checked."""

    def __init__(self, firmware_dir):
        self.dir = Path(firmware_dir)

    def find_spec(self, name, path=None, target=None):
        import importlib.util

        src = self.dir / f"{name}.py"
        if path is not None or not src.exists():
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        _load_int32_module(module.__name__, self.dir / f"{module.__name__}.py", module)


def _int32_firmware(firmware_dir):
    """Make `import NAME` load firmware/NAME.py int32-checked, in this process, with
    what MicroPython has and CPython lacks: the micropython module, uctypes's addressof
    and bytearray_at, time.ticks_ms and ticks_diff, gc.mem_alloc (0: no MicroPython heap
    here)."""
    import gc
    import types

    shim = types.ModuleType("micropython")
    shim.viper = shim.native = lambda f: f
    shim.const = lambda x: x
    sys.modules["micropython"] = shim
    uctypes = types.ModuleType("uctypes")
    uctypes.addressof, uctypes.bytearray_at = _Ptr.addressof, _Ptr.bytearray_at
    sys.modules["uctypes"] = uctypes
    time.ticks_ms = lambda: int(time.time() * 1000)
    time.ticks_diff = lambda t, s: t - s
    gc.mem_alloc = lambda: 0
    sys.meta_path.insert(0, _Int32Finder(firmware_dir))


def emulate_int32(request, firmware_dir=FIRMWARE_DIR):
    """Run firmware/conform_ops.py on REQUEST in this (CPython) process as the int32
    target; prints what a device prints. Used in a subprocess by run_ops."""
    _int32_firmware(firmware_dir)
    import conform_ops

    conform_ops.main(str(request))


def emulate_int32_train(config, firmware_dir=FIRMWARE_DIR):
    """Run firmware/qgpt_train.py on the config file in this (CPython) process as the
    int32 target; returns its exit code. Used in a subprocess by run_training."""
    _int32_firmware(firmware_dir)
    import qgpt_train

    return qgpt_train.main(str(config))
