#!/usr/bin/env bash
# Device call 2 (carry .dev/b), on the machine still warm from call 1: LiteRT, the .tflite files and
# the age network's Keras copy, then bench.gpu: GPU and CPU scans of the same library in one run.
#   run: WORKERS=8 bash bench/device/call2.sh    carry: [".dev/b"]
set -u
T=/tmp/dev PY=python3 DEVS=${DEVS:-gpu,cpu}
[ -n "${SIMPY:-}" ] && PY=$SIMPY T=/tmp/devsim DEVS=cpu
OUT=${OUT:-$T/out}; mkdir -p "$OUT"
[ -d "$T/site" ] && [ -d "$T/lib" ] || { echo "cold: call 1's set-up is gone; run call1.sh first"; exit 3; }
t0=$(date +%s)
tar -xJf .dev/b/litert.tar.xz -C "$T/site" && tar -xJf .dev/b/tflite.tar.xz -C . && tar -xJf .dev/b/keras.tar.xz -C . || exit 9
export PYTHONPATH=$PWD:$T/site:$T/frm KERAS_BACKEND=jax PYTHONUNBUFFERED=1
(nvidia-smi dmon -s u -d 1 > "$OUT/dmon.txt" 2>&1 &) 2>/dev/null
timeout "${SCAN_S:-400}" $PY -m bench.gpu --library "$T/lib" --devices "$DEVS" --workers "${WORKERS:-}" \
    ${DETECTOR:+--detector "$DETECTOR"} --out "$OUT/gpu.json"
echo "bench rc=$? $(( $(date +%s) - t0 ))s"
pkill -f "nvidia-smi dmon" 2>/dev/null
tail -5 "$OUT/gpu.log" 2>/dev/null
exit 0
