#!/bin/sh
# instructions a call of micro.py's NAME: cachegrind at 100 and 300 calls, the difference / 200
here=$(dirname "$0")
for name in "$@"; do
  a=$(PYTHONHASHSEED=0 OPENBLAS_NUM_THREADS=1 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null python "$here/micro.py" "$name" 100 2>&1 | awk '/I *refs/ {gsub(/,/, "", $NF); print $NF}')
  b=$(PYTHONHASHSEED=0 OPENBLAS_NUM_THREADS=1 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null python "$here/micro.py" "$name" 300 2>&1 | awk '/I *refs/ {gsub(/,/, "", $NF); print $NF}')
  echo "$name: $(( (b - a) / 200 ))"
done
