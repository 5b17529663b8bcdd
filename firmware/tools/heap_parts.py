"""Where the device heap of a training run goes (issue 13; firmware/README.md, "Memory"):
for a SPEC, the heap after setup (the `start` line's heap=, the unix port, 64-bit) split
into the state block, each module the run keeps (its code, objects and the text of the
names it brings), the views into the block, the Model, and the entries of the interned
names' pools (of a whole run, sampling's names too); the rest is the config, the
dataset's file, the interpreter's own and what the setup's stages left (their names'
text among it).

    python firmware/tools/heap_parts.py [SPEC]      (default: int8)

A module's bytes: gc.mem_alloc() before and after importing it, in the run's order, in
a process whose first four name pools are already allocated (so that no module is
charged for a pool). A host tool: not deployed.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heap_by_policy import device_config  # noqa: E402
from kernels_split_heap import FIRMWARE, build, device_env, tool  # noqa: E402

RUN_MODULES = ("runbase", "qgpt_train", "kernels", "prng", "loss", "adam", "model")

# MicroPython: the names' pools grown to four (300 names) first, then the modules one by
# one, then the views and the Model of the config's policy, built by the setup's stages
DRIVER = '''
import gc, sys, micropython
class _Names:
    pass
for i in range(125):  # names until the fourth pool is allocated
    setattr(_Names, "n%d" % i, 0)
gc.collect()
prev = gc.mem_alloc()
for name in sys.argv[2:]:
    __import__(name)
    gc.collect()
    print("module", name, gc.mem_alloc() - prev)
    prev = gc.mem_alloc()
import qgpt_train, runbase
cfg = runbase._stage("runcfg", sys.argv[1], None)
runbase._stage("runpolicy", cfg, None)
gc.collect()
prev = gc.mem_alloc()
views = runbase._stage("layout", cfg, None)
gc.collect()
print("views", gc.mem_alloc() - prev)
print("block", cfg["numbers"][8][0])
import model
prev = gc.mem_alloc()
mdl = model.Model(views, cfg["numbers"], cfg["seed"])
views = None
gc.collect()
print("Model", gc.mem_alloc() - prev)
'''


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", nargs="?", default="int8")
    a = ap.parse_args(argv)
    from qgpt import data, pack

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pack.write(tmp / "names.bin", data.load(None).train)
        fw = build(FIRMWARE, tmp / "fw")
        cfg = {"lr_q30": round(0.01 * 2**30), "steps": 40, "data": str(tmp / "names.bin"),
               "checkpoint_every": 0, "samples": 0, "stop_at": 1, "log_every": 100}
        cfg.update(device_config(a.spec))  # not ** in the dict: firmware/ compiles for boards
        modules = RUN_MODULES
        if any(cfg["policy"][c].startswith("b") for c in ("adam_m", "adam_v")):
            modules += ("blockadam",)  # block-scaled Adam state (9.6)
        (tmp / "qgpt.json").write_text(json.dumps(cfg))
        # the firmware from a relative path, as the conformance levels run it (the unix
        # port interns each module's path)
        env = device_env(os.path.relpath(fw, tmp))
        run = subprocess.run([tool("micropython"), "-X", "heapsize=128K", "-c",
                              "import micropython, qgpt_train\nqgpt_train.main('qgpt.json')\n"
                              "micropython.qstr_info()"], cwd=tmp, env=env, capture_output=True,
                             text=True)
        heap = re.search(r"heap=(\d+)", run.stdout)
        names = re.search(r"n_qstr=(\d+), n_str_data_bytes=(\d+), n_total_bytes=(\d+)",
                          run.stdout)
        (tmp / "parts.py").write_text(DRIVER)
        parts = subprocess.run([tool("micropython"), "-X", "heapsize=256K", "parts.py",
                                "qgpt.json"] + list(modules), cwd=tmp, env=env,
                               capture_output=True, text=True)
        if not (heap and names) or parts.returncode != 0:
            raise SystemExit("the firmware failed:\n" + run.stdout + run.stderr + parts.stderr)
        got = dict(re.findall(r"^(?:module )?(\S+) (\d+)$", parts.stdout, re.M))
    block = int(got["block"])
    heap = int(heap.group(1))
    n, text, total = (int(x) for x in names.groups())
    rows = [("state block (layout.block_bytes)", block)]
    rows += [(f"module {m}", int(got[m])) for m in modules]  # with its names' text
    rows += [("layout.setup: views into the block, the numbers, its names", int(got["views"])),
             ("Model object (model.Model, without the views)", int(got["Model"])),
             (f"name pools: {n} names after a run, their entries (qstr_info)", total - text)]
    rest = heap - sum(b for _, b in rows)
    print(f"{a.spec}: heap after setup {heap} bytes (gc.mem_alloc() on this port)")
    for what, b in rows + [("the rest: config, dataset file, interpreter, setup's leftovers",
                            rest)]:
        print(f"{what} | {b}")


if __name__ == "__main__":
    main()
