#!/usr/bin/env bash
# The GPU check: one command on a machine with one CUDA GPU, under 8 minutes, one table at the end.
#
#   cp ../shared/data/cifar10-jpeg.tar.gz local/      # once, here (local/ is git-ignored)
#   bash benchmarks/gpu_check.sh                      # there; with the device tool: carry ["local"]
#
# Phases, in this order (each skipped, and shown as "not run", when the time budget is spent):
#   1. the CIFAR folders from local/cifar10-jpeg.tar.gz (benchmarks/cifar_from_jpeg.py; no network):
#      CIFAR-10, and CIFAR-100 shapes from the same images relabelled into 100 classes (speed only);
#   2. `pytest -m cuda` (tests/engine/test_cuda.py and the sync-debug test of tests/engine/test_spine.py), while a
#      CIFAR-10-LT run in fp32 eager NCHW trains beside it: the accuracy reference, not a timing;
#   3. one CIFAR-100-LT-shaped run (ResNet-32, 200 epochs, eval every 10 and at the end), timed end to
#      end, compile time apart (the headline goal: <= 60 s, aim 20 s);
#   4. benchmarks/reference_step.py: a step written the way the original code works against fcc's;
#   5. one CIFAR-10-LT run, timed the same way (the single run the parallel runs compare with);
#   6. 8 concurrent CIFAR-10-LT runs, seeds 1-8 (`fcc sweep --parallel 8`): wall-clock, and the seed
#      noise of the test accuracy that the fp32 eager run is judged against;
#   7. benchmarks/decode_pipeline.py: the image-file path (ImageNet-LT / iNat18), decoding per core and
#      with 4 and 12 workers, colour jitter on the GPU after decoding;
#   8. benchmarks/train_throughput.py (model-only vs full steps, eval), if time is left.
# Results: the table on stdout and in $OUT/gpu_check.md ($OUT: the device tool's folder; else
# local/gpu_check), with the phases' logs beside it; run directories under local/gpu_runs.
# Environment: ARCHIVE (default local/cifar10-jpeg.tar.gz), BUDGET seconds (default 470), PYTHON
# (default python3), EPOCHS (default 200); for a dry run of the plumbing on a CPU: ALLOW_CPU=1,
# EXTRA="train.max_steps_per_epoch=2" (overrides for every run), REF_STEPS / REF_ROUNDS (default 30 / 3).
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${BUDGET:-470}
ARCHIVE=${ARCHIVE:-local/cifar10-jpeg.tar.gz}
PY=${PYTHON:-python3}
EPOCHS=${EPOCHS:-200}
read -r -a EXTRA <<<"${EXTRA:-}"
REF_STEPS=${REF_STEPS:-30}
REF_ROUNDS=${REF_ROUNDS:-3}
DEVICE=$([ -n "${ALLOW_CPU:-}" ] && echo cpu || echo cuda)
RES=${OUT:-local/gpu_check}
W=local/gpu_runs
DATA=local/gpu_data

if [ ! -f "$ARCHIVE" ]; then
  echo "gpu_check: $ARCHIVE not found. Copy a CIFAR-10 JPEG archive there first (train/<class>/*.jpg, test/<class>/*.jpg;" >&2
  echo "  local/ is git-ignored, so with the device tool name it in carry: [\"local\"]), or set ARCHIVE=PATH." >&2
  exit 2
fi
if [ -z "${ALLOW_CPU:-}" ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: $PY sees no CUDA GPU; this check is for a machine with one" >&2
  exit 2
fi
mkdir -p "$RES" "$W"
rm -rf "${W:?}"/*
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/local/gpu_cache/inductor}

elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET - $(elapsed))); }
say() { echo "[gpu_check $(elapsed) s] $*"; }
# timed NAME CMD...: CMD's output to $W/NAME.time/log, its exit status and start/end times beside it
timed() {
  local d="$W/$1.time"; shift
  mkdir -p "$d"
  date +%s.%N >"$d/start"
  timeout "$(( $(left) > 10 ? $(left) : 10 ))" "$@" >"$d/log" 2>&1
  echo $? >"$d/rc"
  date +%s.%N >"$d/end"
}
run_cifar() {  # run_cifar NAME CONFIG OVERRIDES...
  local name=$1 config=$2; shift 2
  timed "$name" "$PY" -m fcc_lt train "$config" "data.root=$DATA" "train.epochs=$EPOCHS" train.eval_every=10 \
    train.progress=false "out=$W/$name" --overwrite "${EXTRA[@]}" "$@"
}

{ date -u +%Y-%m-%dT%H:%MZ; nvidia-smi -L 2>/dev/null | head -1
  "$PY" -c "import torch; c = torch.cuda.is_available(); print('torch', torch.__version__, 'CUDA', torch.version.cuda,
           torch.cuda.get_device_name() if c else 'no GPU (dry run)')"
  echo "CPU cores $(nproc)"; } >"$W/env.txt" 2>&1
say "$(tr '\n' ' ' <"$W/env.txt")"

say "1. CIFAR folders from $ARCHIVE"
if [ ! -d "$DATA/cifar-100-python" ]; then
  "$PY" benchmarks/cifar_from_jpeg.py "$ARCHIVE" "$DATA" --cifar100-standin || { say "data build failed"; exit 1; }
fi

say "2. pytest -m cuda, beside a CIFAR-10-LT fp32 eager run"
run_cifar c10_fp32_eager cifar10_lt/ce_fcc_if100 train.amp=off train.compile=off \
  train.channels_last=false &
eager_pid=$!
timeout 300 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests/engine/test_cuda.py tests/engine/test_spine.py >"$W/pytest.log" 2>&1
tail -3 "$W/pytest.log"
wait "$eager_pid"
say "fp32 eager run: exit $(cat "$W/c10_fp32_eager.time/rc")"

if [ "$(left)" -ge 90 ]; then
  say "3. CIFAR-100-LT-shaped run"
  run_cifar c100 cifar100_lt/ce_fcc_if100
  say "exit $(cat "$W/c100.time/rc")"
fi
if [ "$(left)" -ge 60 ]; then
  say "4. the reference-style step against fcc's"
  timed reference "$PY" benchmarks/reference_step.py --archive "$ARCHIVE" --data-root "$DATA" --workers 8 \
    --steps "$REF_STEPS" --rounds "$REF_ROUNDS" --json "$W/reference.json"
  tail -5 "$W/reference.time/log"
fi
if [ "$(left)" -ge 60 ]; then
  say "5. CIFAR-10-LT run"
  run_cifar c10 cifar10_lt/ce_fcc_if100
  say "exit $(cat "$W/c10.time/rc")"
fi
if [ "$(left)" -ge 120 ]; then
  say "6. 8 concurrent CIFAR-10-LT runs"
  cat >"$W/parallel.yaml" <<EOF
out: $W/parallel
configs:
  - cifar10_lt/ce_fcc_if100
seeds: [1, 2, 3, 4, 5, 6, 7, 8]
overrides:
  - data.root=$DATA
  - train.epochs=$EPOCHS
  - train.eval_every=10
  - train.progress=false
$(for o in "${EXTRA[@]}"; do echo "  - $o"; done)
EOF
  timed parallel "$PY" -m fcc_lt sweep "$W/parallel.yaml" --parallel 8
  say "exit $(cat "$W/parallel.time/rc")"
fi
if [ "$(left)" -ge 75 ]; then
  say "7. the image path: decoding in workers, colour jitter on the GPU"
  timeout "$(($(left) - 45))" "$PY" benchmarks/decode_pipeline.py --device "$DEVICE" --workers 4 12 --count 1024 \
    --epochs 2 --batch-size 64 >"$W/decode.txt" 2>&1
fi
if [ "$(left)" -ge 90 ]; then
  say "8. train_throughput"
  timeout "$(($(left) - 10))" "$PY" benchmarks/train_throughput.py --data-root "$DATA" --steps "$REF_STEPS" \
    --rounds "$REF_ROUNDS" \
    --amp auto --eval-batch-sizes 500 2000 --eval-images 10000 >"$W/throughput.txt" 2>&1
fi

"$PY" benchmarks/gpu_check_table.py "$W" --out "$RES/gpu_check.md"
cp "$W/pytest.log" "$RES/" 2>/dev/null
for name in c10 c100 reference parallel; do cp "$W/$name.time/log" "$RES/$name.log" 2>/dev/null; done
cat "$W/throughput.txt" "$W/decode.txt" >"$RES/benchmarks.txt" 2>/dev/null
say "done; table in $RES/gpu_check.md"
