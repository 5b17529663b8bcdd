"""How the firmware's folder moves the device heap (firmware/README.md, "Memory"): the
unix port builds its module paths from MICROPYPATH on the heap, so the same run starts
with more of the heap in use from a deeper folder. For each folder below, the int8
preset trains 6 steps with 2 samples under a heap of HEAPSIZE, set up as the
conformance run level sets up its runs (the run's folder beside the dataset, given as
`../names.bin`, and a fixed environment), and the tool prints MICROPYPATH, the `start`
line's heap= and whether the run finished.

    python firmware/tools/heap_by_path.py [--heapsize 56K] [--policy int8]

A host tool: not deployed.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from qgpt.conformance import training as cf

FOLDERS = ("", "device0", "device0/deeper-than-that")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heapsize", default="56K")
    ap.add_argument("--policy", default="int8")
    a = ap.parse_args(argv)
    case = cf.policy_case(a.policy)
    with tempfile.TemporaryDirectory(prefix="qgpt-heap-path-") as tmp:
        base = Path(tmp)
        cf.pack_names(None, base / "names.bin")
        print(f"policy {a.policy}, heapsize {a.heapsize}")
        print("MICROPYPATH | heap after setup | run")
        for i, sub in enumerate(FOLDERS):
            fw = cf.firmware_build(base / sub / "firmware")
            run = base / f"run{i}"
            run.mkdir()
            config = cf.device_config(case, "../names.bin", stop_at=6, samples=2)
            got = cf.finish_training(cf.start_training(config, run, heapsize=a.heapsize,
                                                       firmware_dir=fw), run)
            heap = got.start.split("heap=")[1].split()[0] if "heap=" in got.start else "-"
            print(f"{os.path.relpath(fw, run)} | {heap} | {got.failure or 'finished'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
