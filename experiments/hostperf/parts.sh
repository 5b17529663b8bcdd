#!/bin/sh
# instructions a call of parts.py's PART: cachegrind at 100 and 300 calls, the difference / 200
# usage: parts.sh "FORMAT ROUNDING" PART...
here=$(dirname "$0"); cfg=$1; shift
count() {
  PYTHONHASHSEED=0 OPENBLAS_NUM_THREADS=1 valgrind --tool=cachegrind --cache-sim=no \
    --cachegrind-out-file=/dev/null python "$here/parts.py" "$1" "$2" $cfg 2>&1 |
    awk '/I *refs/ {gsub(/,/, "", $NF); print $NF}'
}
for part in "$@"; do
  a=$(count "$part" 100); b=$(count "$part" 300)
  echo "$cfg $part: $(( (b - a) / 200 ))"
done
