"""Mutation testing of the firmware (qgpt/conformance/mutants.py): which mutants it
makes, that its table of equivalent mutants names real ones, and (slow) a run that
kills or explains every mutant of a module without touching firmware/."""

import hashlib
import shutil
from pathlib import Path

import pytest

from qgpt.conformance import mutants
from qgpt.conformance.equivalent import EQUIVALENT
from qgpt.firmware_build import FIRMWARE_DIR, firmware_modules

SOURCE = '''"""A docstring with 1 + 2 and x << 3."""
LIMIT = const(30)  # a comment: 5 - 4


def f(x: int) -> int:
    print("1 + 2")
    y = (x + (1 << 4)) >> 5
    if y < 0 - LIMIT:
        y -= 1
    return y
'''


def test_each_mutant_changes_one_token_of_integer_code():
    got = {(m.line, m.function, m.original, m.replacement) for m in mutants.mutants_of("m",
                                                                                      SOURCE)}
    want = {
        (2, "", "30", "31"), (2, "", "30", "29"),
        (7, "f", "+", "-"), (7, "f", "1", "2"), (7, "f", "1", "0"), (7, "f", "<<", ">>"),
        (7, "f", "4", "5"), (7, "f", "4", "3"), (7, "f", ">>", "<<"), (7, "f", "5", "6"),
        (7, "f", "5", "4"),
        (8, "f", "<", "<="), (8, "f", "0", "1"), (8, "f", "0", "-1"), (8, "f", "-", "+"),
        (9, "f", "-=", "+="), (9, "f", "1", "2"), (9, "f", "1", "0"),
    }
    assert got == want  # no docstring, comment, print or annotation is touched
    m = next(m for m in mutants.mutants_of("m", SOURCE) if m.original == "<<")
    out = mutants.mutated_source(SOURCE, m)
    assert out.splitlines()[6] == "    y = (x + (1 >> 4)) >> 5"
    assert out.count("\n") == SOURCE.count("\n")


def test_every_equivalent_mutant_is_a_mutant_of_the_firmware():
    keys = set()
    for mod in mutants.mutated_modules():
        keys |= {m.key for m in mutants.mutants_of(mod, (FIRMWARE_DIR / f"{mod}.py").read_text())}
    stale = [k for k in EQUIVALENT if k not in keys]
    assert not stale, f"equivalent.py names mutants the firmware no longer has: {stale}"
    assert all(len(why) > 20 for why in EQUIVALENT.values())


def test_the_mutated_modules_are_the_firmwares_integer_code():
    mods = mutants.mutated_modules()
    assert {"kernels", "adam", "loss", "model", "sampling", "prng", "policy"} <= set(mods)
    assert set(mods) | set(mutants.NOT_MUTATED) >= set(firmware_modules())


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).glob("*.py"))}


@pytest.mark.slow
def test_a_mutation_run_kills_or_explains_every_mutant_of_sampling(tmp_path):
    before = _digest(FIRMWARE_DIR)
    out = tmp_path / "mutants.md"
    code = mutants.main(["--modules", "sampling", "--jobs", "2", "--out", str(out)])
    text = out.read_text()
    assert code == 0, text  # no survivor outside equivalent.py
    row = next(line for line in text.splitlines() if line.startswith("| sampling |"))
    names = ("mutants", "killed", "ops", "int32", "steps", "run", "invalid", "equivalent",
             "survived")
    c = dict(zip(names, (int(x) for x in row.strip("| ").split(" | ")[1:]), strict=True))
    assert c["mutants"] == c["killed"] + c["invalid"] + c["equivalent"] + c["survived"]
    assert c["survived"] == 0 and c["killed"] == c["ops"] + c["int32"] + c["steps"] + c["run"]
    assert _digest(FIRMWARE_DIR) == before  # mutated copies only
    assert (tmp_path / "mutants.json").exists()


def test_a_reports_survivors_are_judged_again_after_the_firmware_moved(tmp_path):
    from qgpt.conformance.mutant_report import load_verdicts

    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, fw)
    src = (fw / "sampling.py").read_text()
    survivor = next(m for m in mutants.mutants_of("sampling", src) if m.original == "128")
    (fw / "sampling.py").write_text("\n\n" + src)  # every line two further down
    report = tmp_path / "mutants.md"
    report.write_text(f"# report\n\n- {survivor.describe()}: **NOT EQUIVALENT: ...**\n")
    keep = load_verdicts(report, fw)
    moved = [m for m in mutants.mutants_of("sampling", (fw / "sampling.py").read_text())
             if m.key == survivor.key]
    assert moved and moved[0].line == survivor.line + 2
    assert all(m not in keep for m in moved)  # judged again, found by the line's text
    assert len(keep) == sum(len(mutants.mutants_of(mod, (fw / f"{mod}.py").read_text()))
                            for mod in mutants.mutated_modules(fw)) - len(moved)
