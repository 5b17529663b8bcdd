"""What splitting firmware/kernels.py would cost in device heap (issue 11; firmware/README.md,
"Memory"): the firmware as it is against the same firmware with kernels.py cut into four
modules along the op families of docs/arithmetic.md (integer functions; embedding, rmsnorm,
linear, element-wise; attention and cross-entropy; Adam), model.py, sampling.py and
conform_ops.py importing the pieces.

    python firmware/tools/kernels_split_heap.py [--format q4.12]

Each build trains 20 steps on the unix port at 96K (checkpoint, then a resume to step 40
with samples) and prints the heap after setup (the `start` line's heap=), the heap peak
(the `done` line's heap_peak) and the smallest heap size (the X option), in K, from which
both sessions finish at every size up to 96K. This file is a host tool: it is not
deployed (the device gets firmware/*.py).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent
# the section comments of kernels.py ("# --- NAME (sections ...) ---") -> the module
FAMILIES = (("integer functions", "kfunc"), ("dot products", "kfunc"), ("embedding", "kdense"),
            ("rmsnorm", "kdense"),
            ("linear", "kdense"), ("element-wise", "kdense"), ("attention", "kattn"),
            ("cross-entropy", "kattn"), ("Adam", "kadam"), ("buffer helpers", "kadam"),
            ("block-scaled", "kadam"))
ALIASES = {"kfunc": "KF", "kdense": "KD", "kattn": "KA", "kadam": "KO"}
IMPORTS = {"kdense": "from kfunc import dot_rows\n",
           "kattn": "from kfunc import softmax, dot_rows\n"}


def tool(name):
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def split_kernels(dest):
    """Copy the firmware to dest with kernels.py cut into the modules of FAMILIES."""
    shutil.copytree(FIRMWARE, dest, ignore=shutil.ignore_patterns("tools", "*.md"))
    text = (dest / "kernels.py").read_text()
    first = text.index("\n# --- ")
    head, body = text[:first], text[first:]
    consts = re.findall(r"^(_?[A-Z][A-Z0-9_]*) = const\(.*$", head, re.M)
    const_lines = {c: re.search(rf"^{c} = const\(.*$", head, re.M).group(0) for c in consts}
    start = head.index("EXP2_Q15 = ")
    table = head[start:head.index("])\n", start) + 3]  # the table: array("i", [...])
    pieces = {}
    for section in re.split(r"\n(?=# --- )", body.strip("\n")):
        title = section.splitlines()[0]
        module = next(m for key, m in FAMILIES if key in title)
        pieces[module] = pieces.get(module, "") + "\n\n" + section
    owner = {}
    for module, code in pieces.items():
        used = "".join(const_lines[c] + "\n" for c in consts if re.search(rf"\b{c}\b", code))
        top = "from array import array\n\n" if module == "kfunc" else ""
        top += "import micropython\nfrom micropython import const\n" + IMPORTS.get(module, "")
        if module == "kfunc":
            used = table + "\n" + used
        (dest / f"{module}.py").write_text(f'"""{module}"""\n\n{top}\n{used}{code}\n')
        owner.update({f: module for f in re.findall(r"^def (\w+)", code, re.M)})
        owner.update({f: module for f in re.findall(r"^(\w+) = \w+$", code, re.M)})  # aliases
        # public constants (K.PROB_ONE) from the piece that uses them
        owner.update({c: module for c in consts if not c.startswith("_")
                      and re.search(rf"\b{c}\b", code) and c not in owner})
    (dest / "kernels.py").unlink()
    for path in sorted(dest.glob("*.py")):
        src = path.read_text()
        imports = re.compile(r"^( *)import kernels(?: as K)?\b.*$", re.M)
        if not imports.search(src):
            continue
        src = re.sub(r"\bkernels\.(?!py\b)(\w+)", r"K.\1", src)
        # the pieces the file calls; all of them where it imports kernels only to place it
        used = sorted({owner[f] for f in re.findall(r"\bK\.(\w+)", src)}) or sorted(pieces)
        src = re.sub(r"\bK\.(\w+)", lambda m: f"{ALIASES[owner[m.group(1)]]}.{m.group(1)}", src)
        lines = [f"import {u} as {ALIASES[u]}" for u in used]
        src = imports.sub(lambda m, lines=lines: "\n".join(m.group(1) + x for x in lines), src)
        path.write_text(src)
    return sorted(pieces)


def build(src, dest):
    """.mpy files for the host, each with its module's name as its source name, as qgpt
    device deploy builds them (qgpt/firmware_build.py)."""
    dest.mkdir(parents=True)
    for path in sorted(src.glob("*.py")):
        subprocess.run([tool("mpy-cross"), "-march=host", "-O3", "-s", path.stem, "-o",
                        str(dest / f"{path.stem}.mpy"), str(path)], check=True)
    return dest


def device_env(micropypath):
    """The environment of a device process: the firmware's MICROPYPATH and nothing of this
    shell's, as the conformance levels start it (qgpt/conformance/device_run.py
    start_training: the PyPI unix port runs inside a CPython whose start-up, which the
    environment steers, leaves the stale words on the C stack that MicroPython's
    conservative collector scans, so the heap's pieces would depend on it)."""
    return {"MICROPYPATH": micropypath, "PATH": os.defpath}


def train(fw, folder, data, fmt, heapsize, resume):
    """(heap after setup, heap peak) of one session, or None if it failed. fmt: the
    config's format, or a dict of config keys (format, rounding, policy). The firmware
    is found through a MICROPYPATH relative to the session's folder, as the conformance
    levels find it (device_run.start_training: the unix port interns each module's path)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"lr_q30": round(0.01 * 2**30), "steps": 40, "data": os.path.relpath(data, folder),
           "checkpoint_every": 10, "samples": 5, "stop_at": None if resume else 20,
           "resume": resume, "log_every": 100}
    cfg.update(fmt if isinstance(fmt, dict) else {"format": fmt})
    (folder / "qgpt.json").write_text(json.dumps(cfg))
    r = subprocess.run([tool("micropython"), "-X", f"heapsize={heapsize}", "-m", "qgpt_train",
                        "qgpt.json"], cwd=folder,
                       env=device_env(os.path.relpath(fw, folder)),
                       capture_output=True, text=True)
    start = re.search(r"^qgpt start .* heap=(\d+)", r.stdout, re.M)
    done = re.search(r"^done .* heap_peak (\d+)", r.stdout, re.M)
    if r.returncode != 0 or not (start and done):
        return None
    return int(start.group(1)), int(done.group(1))


def measure(fw, work, data, fmt, heaps=range(80, 97)):
    """(heap after setup, heap peak, smallest heapsize in K) of a build: trained at the
    largest of heaps, then, going down, the smallest of heaps from which every larger
    one trains and resumes (fragmentation can make an isolated smaller one pass)."""
    top = f"{heaps[-1]}K"
    first = train(fw, work / top, data, fmt, top, False)
    second = train(fw, work / top, data, fmt, top, True)
    if first is None or second is None:
        raise SystemExit(f"{fw}: training at {top} failed")
    smallest = None
    for k in reversed(heaps):
        folder = work / f"{k}K"
        if not (train(fw, folder, data, fmt, f"{k}K", False) and
                train(fw, folder, data, fmt, f"{k}K", True)):
            break
        smallest = k
    return first[0], max(first[1], second[1]), smallest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", default="q4.12")
    a = ap.parse_args(argv)
    from qgpt import data, pack

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = tmp / "names.bin"
        pack.write(names, data.load(None).train)
        split = tmp / "split-src"
        modules = split_kernels(split)
        rows = [("kernels.py whole", build(FIRMWARE, tmp / "whole"), 1),
                ("split: " + ", ".join(modules), build(split, tmp / "split"), len(modules))]
        print(f"format {a.format}; bytes of gc.mem_alloc() on this port")
        print("build | kernel modules | heap after setup | heap peak | smallest heapsize")
        for label, fw, n in rows:
            setup, peak, smallest = measure(fw, tmp / label[:5], names, a.format)
            print(f"{label} | {n} | {setup} | {peak} | {smallest}K")


if __name__ == "__main__":
    main()
