#!/usr/bin/env bash
# Device call 1 (carry .dev/a): installs the wheels into /tmp/dev, kept while the machine stays warm,
# makes a 480-photo library with bench.make_library (16 in parallel) and checks the GPU face engine.
#   run: bash bench/device/call1.sh          carry: [".dev/a"]
# A rehearsal on this machine: SIMPY=/path/to/python3.12 bash bench/device/call1.sh (JAX on the CPU).
set -u
T=/tmp/dev PY=python3
[ -n "${SIMPY:-}" ] && PY=$SIMPY T=/tmp/devsim
OUT=${OUT:-$T/out}; mkdir -p "$T/frm" "$OUT"
t0=$(date +%s)
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$T/site" .dev/a/whl/*.whl || exit 9
tar -xJf .dev/a/frm.tar.xz -C "$T/frm" && tar -xf .dev/a/faces.tar -C "$T" || exit 9
export PYTHONPATH=$PWD:$T/site:$T/frm KERAS_BACKEND=jax PYTHONUNBUFFERED=1
echo "set up in $(( $(date +%s) - t0 ))s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$PY -c "import jax, keras, dlib, numpy; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'dlib', dlib.__version__, 'numpy', numpy.__version__)"
N=${N:-30}
for i in $(seq 0 15); do
  $PY -m bench.make_library --faces "$T/faces" --out "$T/lib" --n "$N" --start $((i * N)) --seed "$i" \
      --truth "truth-$i.json" > /dev/null 2> "$T/make-$i.log" &
done
wait
echo "library: $(find "$T/lib" -name '*.jpg' | wc -l) photos, $(du -sh "$T/lib" | cut -f1), $(( $(date +%s) - t0 ))s"
[ "${SMOKE:-1}" = 1 ] && { $PY bench/device/smoke.py "$T/lib"; echo "smoke rc=$? $(( $(date +%s) - t0 ))s"; }
exit 0
