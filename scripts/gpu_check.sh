#!/usr/bin/env bash
# GPU check of the cuda target, in one go, on a machine with an NVIDIA GPU and the CUDA
# toolkit but no network (the device machine: carry .gpu, see below).
#
#   1. pycuda from the source distribution in .gpu/ (or a wheel a previous run left in
#      .gpu/wheels/), its pure-Python needs from .gpu/wheels/, installed into /tmp/site;
#   2. pytest -m cuda (every op example against the reference on the GPU, the hand-written
#      programs in both thread mappings, resident variables, traces, failed runs, cache,
#      vectorised maps, and the digits examples training on --target cuda: the device
#      image has scikit-learn);
#   3. the GPU rows of shared/BENCH.md: scripts/gpu_kernel_bench.py (W1/W2 kernel time vs
#      the device copy limit, W3 step vs PyTorch eager) and `python -m graphc.bench
#      --suite W1,W2,W3 --target cuda`.
# Results go to $OUT (default .gpu/out), at most 7 files: summary.txt, pycuda_build.log, the
# pycuda wheel built here (copy it into .gpu/wheels/ to skip the build next time),
# pytest_cuda.log, gpu_bench.json, bench_suite.log, bench_suite.json.
#
# Preparing .gpu/ on a machine with network (once):
#   echo /.gpu/ >> .git/info/exclude
#   pip download --no-binary :all: --no-deps pycuda -d .gpu/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/wheels \
#     pytools platformdirs mako siphash24 scipy-openblas32
# Device run: run(command="bash scripts/gpu_check.sh", carry=[".gpu"], timeout_s=590)
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/.gpu/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
JOBS=$(nproc 2>/dev/null || echo 4)
SITE=/tmp/site
if [ -n "${CUDA_HOME:-${CUDA_PATH:-}}" ]; then
  CUDA_ROOT=${CUDA_HOME:-$CUDA_PATH}
elif [ -d /usr/local/cuda/include ]; then
  CUDA_ROOT=/usr/local/cuda
else
  CUDA_ROOT=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
fi
export PYTHONUNBUFFERED=1
# The whole script must end inside one device command (at most 600 s): each step gets what
# is left of GPU_CHECK_SECONDS, and later steps are skipped rather than cut off mid-way.
BUDGET=${GPU_CHECK_SECONDS:-570}
left() { echo $((BUDGET - SECONDS)); }
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }

log "host: $(uname -m), python: $($PY --version 2>&1), cuda root: $CUDA_ROOT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  2>&1 | tee -a "$OUT/summary.txt"
nvcc --version | tail -1 | tee -a "$OUT/summary.txt"

# -- 1. pycuda ---------------------------------------------------------------------------
mkdir -p "$SITE"
shopt -s nullglob
wheels=(.gpu/wheels/*.whl)
if ((${#wheels[@]})); then
  $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "${wheels[@]}" \
    2>&1 | tail -3
fi
export PYTHONPATH="$SITE:$ROOT"
if ! $PY -c "import importlib.util as u, sys; sys.exit(u.find_spec('pycuda') is None)"; then
  sdist=(.gpu/pycuda-*.tar.gz)
  if ((${#sdist[@]} == 0)); then
    log "FAIL: no pycuda wheel or sdist in .gpu/"; exit 2
  fi
  # pycuda links with -lcuda: the toolkit's stub, else the driver's library (a bare
  # libcuda.so.1 gets an unversioned link next to it in /tmp/cudadrv).
  CUDADRV_DIR=""
  for d in "$CUDA_ROOT/lib64/stubs" "$CUDA_ROOT/targets/x86_64-linux/lib/stubs" \
    /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64; do
    if [ -e "$d/libcuda.so" ]; then CUDADRV_DIR=$d; break; fi
    lib=$(ls "$d"/libcuda.so.* 2>/dev/null | head -1)
    if [ -n "$lib" ]; then
      mkdir -p /tmp/cudadrv && ln -sf "$lib" /tmp/cudadrv/libcuda.so && CUDADRV_DIR=/tmp/cudadrv
      break
    fi
  done
  log "building pycuda from ${sdist[0]} with $JOBS jobs (libcuda from ${CUDADRV_DIR:-nowhere})"
  rm -rf /tmp/pycuda-build && mkdir -p /tmp/pycuda-build
  tar xzf "${sdist[0]}" -C /tmp/pycuda-build
  (
    cd /tmp/pycuda-build/pycuda-* &&
      $PY configure.py --cuda-root="$CUDA_ROOT" --no-cuda-enable-curand \
        ${CUDADRV_DIR:+--cudadrv-lib-dir="$CUDADRV_DIR"} &&
      $PY setup.py -q build_ext -j "$JOBS" &&
      $PY setup.py -q bdist_wheel -d /tmp/pycuda-wheel
  ) >"$OUT/pycuda_build.log" 2>&1 || { log "FAIL: pycuda build (see pycuda_build.log)"; tail -30 "$OUT/pycuda_build.log"; exit 3; }
  $PY -m pip install -q --no-index --no-deps --target "$SITE" /tmp/pycuda-wheel/*.whl
  cp /tmp/pycuda-wheel/*.whl "$OUT/"
fi
$PY - <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import graphc.backends.cuda as c
print("availability:", c.availability() or "ok")
from graphc.backends.cuda.runtime import device
d = device()
print("device:", d.name, d.arch, "SMs:", d.sm_count, "cuBLAS:", d.cublas is not None)
EOF

# -- 2. the cuda-marked tests -------------------------------------------------------------
# (each case compiles its own module with nvcc: spread them over the cores)
T=$(( $(left) - 200 )); ((T > 240)) && T=240
log "pytest -m cuda (timeout ${T}s)"
# -v: one line per finished test, so a run cut off by the timeout still says what passed
timeout "$T" $PY -m pytest -v -m cuda -n "$JOBS" -p no:cacheprovider --durations=10 \
  tests/backends tests/test_examples.py >"$OUT/pytest_cuda.log" 2>&1
rc=$?
tail -15 "$OUT/pytest_cuda.log"
for word in PASSED FAILED SKIPPED ERROR; do
  printf '%s %s  ' "$word" "$(grep -c " $word " "$OUT/pytest_cuda.log")"
done | tee -a "$OUT/summary.txt"
echo | tee -a "$OUT/summary.txt"
grep " FAILED \| ERROR " "$OUT/pytest_cuda.log" | head -20 | tee -a "$OUT/summary.txt"
log "pytest -m cuda exit status $rc (124: cut off by the timeout)"

# -- 3. GPU benchmark rows ----------------------------------------------------------------
T=$(( $(left) - 90 )); ((T > 110)) && T=110
if ((T >= 30)); then
  log "kernel benchmark W1, W2, W3 (timeout ${T}s)"
  timeout "$T" $PY scripts/gpu_kernel_bench.py "$OUT" >>"$OUT/summary.txt" 2>&1
  log "gpu_kernel_bench exit status $?"
else
  log "SKIPPED kernel benchmark: only $(left)s left"
fi
T=$(( $(left) - 5 ))
if ((T >= 30)); then
  log "python -m graphc.bench --suite W1,W2,W3 --target cuda (timeout ${T}s)"
  timeout "$T" $PY -m graphc.bench --suite W1,W2,W3 --target cuda --repeat 5 --budget 3 \
    --no-progress --json "$OUT/bench_suite.json" >"$OUT/bench_suite.log" 2>&1
  log "graphc.bench exit status $?"
  tail -25 "$OUT/bench_suite.log"
else
  log "SKIPPED graphc.bench: only $(left)s left"
fi
log "done"
exit $rc
