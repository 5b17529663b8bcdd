"""The mutation report: verdicts saved and loaded (JSON, a cut run's JSON lines, a
report's survivors), counted per module, rendered as markdown."""

import json
import os
from dataclasses import asdict
from pathlib import Path

from qgpt.conformance.equivalent import EQUIVALENT
from qgpt.conformance.mutant_sites import Mutant, mutants_of, mutated_modules
from qgpt.firmware_build import FIRMWARE_DIR


def save_results(results, path):

    rows = [{**asdict(m), "verdict": v, "level": lvl, "detail": d}
            for m, v, lvl, d in results]
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=0) + "\n")
    os.replace(tmp, path)


def load_results(path):
    """[(Mutant, verdict, level, detail)] of a saved run (the .json of --out)."""

    text = Path(path).read_text()
    rows = ([json.loads(line) for line in text.splitlines() if line.strip()]
            if str(path).endswith(".jsonl") else json.loads(text))
    return [(Mutant(**{k: v for k, v in r.items() if k not in ("verdict", "level", "detail")}),
             r["verdict"], r["level"], r["detail"]) for r in rows]


def load_verdicts(path, firmware_dir=FIRMWARE_DIR, keep_equivalent=False):
    """{Mutant: (verdict, level, detail)} to keep from a saved run: the .json of --out
    or a cut run's .partial.jsonl (every verdict but the survivors', and with
    keep_equivalent those of the survivors equivalent.py lists), or a report
    (.md): every mutant but the
    survivors it lists, marked "earlier" (judged again: only its survivors)."""
    import re

    path = Path(path)
    if path.suffix in (".json", ".jsonl"):  # a run's verdicts, or a cut run's so far
        return {m: (v, lvl, d) for m, v, lvl, d in load_results(path)
                if v != "survived" or (keep_equivalent and m.key in EQUIVALENT)}
    listed = set()  # by the line's text, not its number: the firmware may have moved
    for line in path.read_text().splitlines():
        m = re.match(r"^- (\w+)\.py:\d+ (\S+): `(.+?)` -> `(.+?)` in `(.*)`: ", line)
        if m:
            listed.add((m[1], "" if m[2] == "<module>" else m[2], m[3], m[4], m[5]))
    out = {}
    for mod in mutated_modules(firmware_dir):
        for m in mutants_of(mod, (Path(firmware_dir) / f"{mod}.py").read_text()):
            if (m.module, m.function, m.original, m.replacement, m.text) not in listed:
                out[m] = ("earlier", "", "")
    return out


# --- the report ---


def classify(results):
    """Per module: counts; and the survivors with their equivalence argument or None."""
    counts, survivors = {}, []
    for m, verdict, level, _ in results:
        c = counts.setdefault(m.module, {"mutants": 0, "killed": 0, "ops": 0, "int32": 0,
                                         "steps": 0, "run": 0, "invalid": 0, "equivalent": 0,
                                         "survived": 0})
        c["mutants"] += 1
        if verdict == "killed":
            c["killed"] += 1
            c[level] += 1
        elif verdict == "invalid":
            c["invalid"] += 1
        else:
            why = EQUIVALENT.get(m.key)
            c["equivalent" if why else "survived"] += 1
            survivors.append((m, why))
    return counts, survivors


def render(results, command):
    counts, survivors = classify(results)
    cols = ("mutants", "killed", "ops", "int32", "steps", "run", "invalid", "equivalent",
            "survived")
    out = ["# Mutation testing of the firmware against conformance", "",
           f"Produced by {command}. Each mutant changes one "
           "token of the firmware's integer code (qgpt/conformance/mutants.py says which); "
           "`killed` counts those the conformance levels catch (ops, int32, steps, run: the level "
           "that caught it), `invalid` those mpy-cross rejects, `equivalent` the survivors "
           "qgpt/conformance/equivalent.py argues no reachable input tells apart, "
           "`survived` any other survivor (a gap in the golden cases).", "",
           "| module | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    total = dict.fromkeys(cols, 0)
    for mod, c in sorted(counts.items()):
        out.append(f"| {mod} | " + " | ".join(str(c[k]) for k in cols) + " |")
        for k in cols:
            total[k] += c[k]
    out.append("| **all** | " + " | ".join(f"**{total[k]}**" for k in cols) + " |")
    out += ["", "## Survivors", ""]
    if not survivors:
        out.append("None.")
    for m, why in survivors:
        label = f"equivalent: {why}" if why else "**NOT EQUIVALENT: a golden case is missing**"
        out.append(f"- {m.describe()}: {label}")
    return "\n".join(out) + "\n"
