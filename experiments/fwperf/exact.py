"""Does a changed firmware train exactly like firmware/? (issue 15's prototypes)

    python experiments/fwperf/exact.py --source COPY [--base OTHER_COPY] [--steps 60]

Both firmwares (the copy and firmware/, or --base: e.g. `git archive` of an older commit)
train the same steps on the built-in names (the unix port) for several
formats, rounding modes and int32 master weights; the state hashes after the last step
must be equal. Exit code 1 if any differs.
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qgpt import conformance as cf  # noqa: E402

CASES = (("q4.12", "nearest", ""), ("q4.12", "floor", ""), ("q4.12", "stochastic", ""),
         ("q8.8", "nearest", ""), ("q8.8", "stochastic", ""), ("q6.10", "floor", ""),
         ("q2.14", "nearest", ""), ("q4.12", "stochastic", "q4.20"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="the changed copy of firmware/")
    ap.add_argument("--base", help="the firmware to compare with (default: firmware/)")
    ap.add_argument("--steps", type=int, default=60)
    a = ap.parse_args(argv)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="qgpt-exact-") as tmp:
        tmp = Path(tmp)
        cf.pack_names(None, tmp / "names.bin")
        base = (cf.firmware_build(tmp / "a", source_dir=Path(a.base)) if a.base
                else cf.firmware_build(tmp / "a"))
        builds = {a.base or "firmware/": base,
                  a.source: cf.firmware_build(tmp / "b", source_dir=Path(a.source))}
        for fmt, rounding, master in CASES:
            hashes = []
            for i, fw in enumerate(builds.values()):
                folder = tmp / f"{fmt}-{rounding}-{master}-{i}"
                folder.mkdir()
                config = cf.device_config(cf.TrainCase(fmt, rounding, master),
                                          tmp / "names.bin", stop_at=a.steps)
                heap = cf.TRAIN_HEAPSIZE_MASTER if master else cf.TRAIN_HEAPSIZE
                run = cf.finish_training(cf.start_training(config, folder, heapsize=heap,
                                                           firmware_dir=fw), folder)
                hashes.append(run.failure or f"{run.done['hash']:08x}")
            same = hashes[0] == hashes[1]
            bad += not same
            print(f"{fmt} {rounding} master={master or '-'}: {' '.join(hashes)} "
                  f"{'equal' if same else 'DIFFERENT'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
