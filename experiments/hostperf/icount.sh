#!/bin/sh
# Instructions per training step (docs/BENCHMARKS.md, "Host training"): cachegrind on
# train.training_steps of 100 and 300 steps (steps.py), the difference over 200, seed 42.
# usage: experiments/hostperf/icount.sh [FORMAT ROUNDING | float -] [OUTDIR]
# With OUTDIR, the per-function counts are kept (OUTDIR/cg.100, OUTDIR/cg.300: compare
# with cg_diff, read with cg_annotate). The qgpt imported is the first on PYTHONPATH.
fmt=${1:-q4.12}; rounding=${2:-nearest}; out=${3:-}
here=$(dirname "$0")
total() {
  file=/dev/null; [ -n "$out" ] && file="$out/cg.$1"
  PYTHONHASHSEED=0 OPENBLAS_NUM_THREADS=1 valgrind --tool=cachegrind --cache-sim=no \
    --cachegrind-out-file="$file" python "$here/steps.py" "$fmt" "$rounding" "$1" 2>&1 |
    awk '/I *refs/ {gsub(/,/, "", $NF); print $NF}'
}
a=$(total 100); b=$(total 300)
echo "$fmt $rounding: $(( (b - a) / 200 )) instructions a step ($a, $b)"
