"""Native code bytes per viper function of a firmware module (issue 15, point 4).

    python experiments/fwperf/fsizes.py [--arch xtensawin] [FILE]   (default: firmware/kernels.py)

Each module-level function is compiled alone by mpy-cross, with the module's other
top-level statements (imports, consts, tables) before it, and its .mpy parsed by
qgpt.mpyfile.mpy_code_bytes: the bytes a board copies into executable memory for it.
The sum is the module's figure of `python -m qgpt.fwprofile --no-phases`.
"""

import argparse
import ast
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qgpt.mpyfile import mpy_code_bytes  # noqa: E402


def function_bytes(path, arch="xtensawin"):
    """[(function name, native bytes)] of the module at path, in file order."""
    from qgpt import conformance as cf

    src = Path(path).read_text()
    lines = src.splitlines(keepends=True)
    tree = ast.parse(src)
    head = "".join("".join(lines[n.lineno - 1:n.end_lineno]) for n in tree.body
                   if not isinstance(n, ast.FunctionDef | ast.ClassDef))
    out = []
    with tempfile.TemporaryDirectory(prefix="qgpt-fsizes-") as tmp:
        one = Path(tmp) / "m.py"
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            one.write_text(head + "\n\n" + "".join(lines[start - 1:node.end_lineno]))
            subprocess.run([cf.default_mpy_cross(), f"-march={arch}", str(one)], check=True)
            sizes = mpy_code_bytes((Path(tmp) / "m.mpy").read_bytes())
            out.append((node.name, sizes.get("viper", 0) + sizes.get("native", 0)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=str(Path(__file__).resolve().parents[2]
                                                    / "firmware" / "kernels.py"))
    ap.add_argument("--arch", default="xtensawin")
    a = ap.parse_args(argv)
    rows = function_bytes(a.file, a.arch)
    for name, n in rows:
        print(f"{name:24s} {n:6d}")
    print(f"{'total':24s} {sum(n for _, n in rows):6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
