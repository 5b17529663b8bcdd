"""Does the firmware's max |W| bound hold at every step? (issue 15, model.py's wmax)

    python experiments/fwperf/wmax_bound.py [--steps 200]

model.Model.train_step raises each tensor's bound wmax by Adam's largest possible move
between the scans of max |W| (forward_position, every _RESCAN steps); the linear kernels'
fast paths are exact only while wmax >= max |W|. A patched copy of the firmware scans
every tensor after every step and prints the smallest slack wmax - max |W| over the
tensors (negative: the bound failed), for several policies with 16-bit weights and a
learning rate 5x the default. Exit code 1 if any slack is negative.
"""

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qgpt import conformance as cf  # noqa: E402

# (policy SPEC, rounding, lr): 16-bit weights (the fast paths' width) with each update path
CASES = (("int16", "nearest", 0.01), ("int16", "stochastic", 0.05),
         ("int16,master=q4.20", "stochastic", 0.05), ("int16", "kahan", 0.05),
         ("int16,adam_m=b8x64,adam_v=b8x64", "floor", 0.05), ("weights=q8.8", "nearest", 0.05))

CHECK = '''
        wm = self.bufs[5]
        if self.nb[0] == 2:
            off = self.nums[0]
            slack = min(wm[j] - K.abs_max(0, 0, self.bufs[1][j], off[j + 1] - off[j], 2)
                        for j in range(_LM_HEAD, _FC2 + 1))
            print("WMAX", self.steps_taken, slack)
'''


def patched(dest):
    """A copy of firmware/ whose train_step prints the bound's slack after each step."""
    src = (Path(__file__).resolve().parents[2] / "firmware").glob("*.py")
    dest.mkdir()
    for path in src:
        text = path.read_text()
        if path.name == "model.py":
            anchor = "        self.steps_taken += 1\n"
            assert anchor in text, "model.py's train_step changed: update CHECK's anchor"
            text = text.replace(anchor, anchor + CHECK)
        (dest / path.name).write_text(text)
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args(argv)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="qgpt-wmax-") as tmp:
        tmp = Path(tmp)
        cf.pack_names(None, tmp / "names.bin")
        fw = cf.firmware_build(tmp / "fw", source_dir=patched(tmp / "src"))
        for i, (spec, rounding, lr) in enumerate(CASES):
            case = cf.policy_case(spec, rounding, lr)
            folder = tmp / f"run{i}"
            folder.mkdir()
            config = cf.device_config(case, tmp / "names.bin", stop_at=a.steps)
            run = cf.finish_training(cf.start_training(config, folder,
                                                       heapsize=cf.device_heap(case),
                                                       firmware_dir=fw), folder)
            slacks = [int(s) for s in re.findall(r"^WMAX \d+ (-?\d+)$", run.stdout, re.M)]
            if run.failure or len(slacks) != a.steps:
                print(f"{spec} {rounding} lr={lr}: failed: {run.failure or 'no WMAX lines'}")
                bad += 1
                continue
            bad += min(slacks) < 0
            print(f"{spec} {rounding} lr={lr}: {a.steps} steps, smallest slack {min(slacks)}, "
                  f"median {sorted(slacks)[len(slacks) // 2]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
