"""The device heap a policy needs (issues 12 and 13; firmware/README.md, "Memory"): for
each SPEC, the firmware trains 20 steps on the unix port (checkpoint, then a resume to
step 40 with samples) and prints the heap after setup (the
`start` line's heap=), the heap peak (the `done` line's heap_peak) and the smallest
heap size (micropython's X option), in K, from which both sessions finish at every
size up to 128K.

    python firmware/tools/heap_by_policy.py [SPEC ...]    (default: the table of README)

SPEC as `qgpt train --policy` takes it (qgpt/policy.py). A host tool: not deployed.
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels_split_heap import FIRMWARE, build, measure  # noqa: E402

SPECS = ("int16", "int16,master=q4.20", "weights=q2.6,acts=q4.4", "int8")


def device_config(spec):
    """The device config's format, rounding and policy keys of a SPEC (section 3.8)."""
    from qgpt import policy

    p = policy.parse_policy(spec)
    classes = {c: (f.name if f else "none") for c, f in p.classes().items()}
    return {"format": classes["weights"], "rounding": p.rounding, "policy": classes}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="*", default=list(SPECS))
    a = ap.parse_args(argv)
    from qgpt import data, pack

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = tmp / "names.bin"
        pack.write(names, data.load(None).train)
        fw = build(FIRMWARE, tmp / "fw")
        print("bytes of gc.mem_alloc() on this port")
        print("policy | heap after setup | heap peak | smallest heapsize")
        for i, spec in enumerate(a.specs):
            setup, peak, smallest = measure(fw, tmp / f"p{i}", names, device_config(spec),
                                            range(40, 129))
            print(f"{spec} | {setup} | {peak} | {smallest}K")


if __name__ == "__main__":
    main()
