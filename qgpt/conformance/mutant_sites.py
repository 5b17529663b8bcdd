"""The mutants of the firmware's integer code: which tokens change, and to what
(qgpt/conformance/mutants.py judges them)."""

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

from qgpt.firmware_build import FIRMWARE_DIR, firmware_modules

NOT_MUTATED = ("conform_ops", "dump", "ckpt", "crcpy", "restore", "resume", "runcfg", "runpolicy",
               "runbase", "qgpt_train", "layout")  # layout: the state block's offsets, set-up only
SWAPS = {"<<": ">>", ">>": "<<", "+": "-", "-": "+", "<": "<=", "<=": "<", ">": ">=",
         ">=": ">", "==": "!=", "!=": "==", "&": "|", "//": "%", "+=": "-=", "-=": "+=",
         "<<=": ">>=", ">>=": "<<="}
SKIPPED_LINES = ("print(", "raise ", "assert ", "import ", "from ", "@")  # no integer code


@dataclass(frozen=True)
class Mutant:
    module: str
    line: int  # 1-based
    col: int  # 0-based, of the token
    function: str  # the enclosing function ("" at module level)
    original: str  # the token
    replacement: str
    text: str  # the source line, stripped
    occurrence: int  # which occurrence of `original` in `text` (0-based)

    @property
    def key(self):
        """What the equivalence table matches: robust to moved lines and split files."""
        return (self.function, self.text, self.original, self.replacement, self.occurrence)

    def describe(self):
        return f"{self.module}.py:{self.line} {self.function or '<module>'}: " \
               f"`{self.original}` -> `{self.replacement}` in `{self.text}`"


def _functions_by_line(tree):
    """line -> the innermost enclosing function's name."""
    names = {}

    def visit(node, name):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) \
                else name
            if inner != name:
                for ln in range(child.lineno, child.end_lineno + 1):
                    names[ln] = inner
            visit(child, inner)

    visit(tree, "")
    return names


def _int_literal(text):
    try:
        value = int(text, 0)
    except ValueError:
        return None
    return value


def mutants_of(module, source):
    """Every single-token mutant of one module's source."""
    lines = source.splitlines()
    function_at = _functions_by_line(ast.parse(source))
    out, previous = [], None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                        tokenize.DEDENT, tokenize.ENDMARKER, tokenize.STRING):
            continue
        line, col = tok.start
        text = lines[line - 1]
        stripped = text.strip()
        skip = stripped.startswith(SKIPPED_LINES) or stripped.startswith(('"""', "'''"))
        replacements = []
        if tok.type == tokenize.NUMBER and not skip:
            value = _int_literal(tok.string)
            if value is not None:
                replacements = [str(value + 1), str(value - 1)]
        elif tok.type == tokenize.OP and tok.string in SWAPS and not skip:
            binary = previous is not None and (
                previous.type in (tokenize.NAME, tokenize.NUMBER)
                or previous.string in (")", "]"))
            if tok.string not in ("+", "-") or binary:
                replacements = [SWAPS[tok.string]]
        previous = tok
        lead = len(text) - len(text.lstrip())
        occurrence = stripped[: col - lead].count(tok.string)
        for rep in replacements:
            out.append(Mutant(module, line, col, function_at.get(line, ""), tok.string, rep,
                              stripped, occurrence))
    return out


def mutated_source(source, m):
    lines = source.splitlines(keepends=True)
    text = lines[m.line - 1]
    assert text[m.col : m.col + len(m.original)] == m.original, m
    lines[m.line - 1] = text[: m.col] + m.replacement + text[m.col + len(m.original) :]
    return "".join(lines)


def mutated_modules(firmware_dir=FIRMWARE_DIR):
    return [m for m in firmware_modules(firmware_dir) if m not in NOT_MUTATED]


def imports_of(firmware_dir, root):
    """The firmware modules `root` imports, transitively (itself included)."""
    names = set(firmware_modules(firmware_dir))
    seen, todo = set(), [root]
    while todo:
        mod = todo.pop()
        if mod in seen or mod not in names:
            continue
        seen.add(mod)
        tree = ast.parse((Path(firmware_dir) / f"{mod}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                todo.append(node.module)
    return seen
