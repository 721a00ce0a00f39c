#!/usr/bin/env bash
# The paper's protocol on one GPU, in one call: CE against CE + FCC on CIFAR-10-LT and CIFAR-100-LT at IF 100,
# 200 epochs, five seeds (the shipped sweeps fcc_protocol_cifar10_lt and fcc_protocol_cifar100_lt), then cRT
# on every stage-1 backbone (the shipped crt_if100, 30 epochs), `fcc analyze` on every run and
# `fcc report` per dataset (tables with 95% intervals, figures).
#
#   cp ../shared/data/cifar10-jpeg.tar.gz local/      # once, here (local/ is git-ignored)
#   bash benchmarks/fcc_protocol_gpu.sh               # there; with the device tool: carry ["local"]
#
# Data: CIFAR-10 from $DATA/cifar-10-batches-py (the official download), else built from $ARCHIVE (the JPEG
# archive, benchmarks/cifar_from_jpeg.py, no network); CIFAR-100 only from $DATA/cifar-100-python (no copy
# can be had on the machines this was written on): a dataset that is not there is skipped and the summary
# says so. CIFAR-10 goes first, whole (stage 1, stage 2, analyses, report); CIFAR-100 only with time left.
# Time: BUDGET seconds in all (default 540, for a 600-second call); stage 1 of a dataset gets what is left
# minus RESERVE (default 150) for its cRT runs, analyses and report, and is stopped (a checkpoint, then
# resumable by running this again on the same machine) when that is spent. Every phase prints its seconds.
# Results: $OUT (the device tool's folder; else local/protocol/results): summary.txt, report_<dataset>.md and
# protocol_<dataset>.tar.gz (the report's files and figures, and each run's config, eval.json,
# analysis.json, metrics.jsonl and train.log; no checkpoints). Work folder: $WORK (default local/protocol).
# Environment: PYTHON (default python3), PARALLEL (runs at once, default 10), SEEDS (e.g. "0 1"; default the
# spec's), EPOCHS / CRT_EPOCHS (default the configs': 200 / 30), EXTRA (overrides for every run).
# A dry run of the plumbing on a CPU: ALLOW_CPU=1 EPOCHS=2 CRT_EPOCHS=1 SEEDS="0 1"
#   PARALLEL=2 EXTRA='train.max_steps_per_epoch=2 model.backbone=resnet_cifar model.backbone_params={"depth":8,"width":4}'
# (resumable: running it again continues a stopped stage 1 and skips finished cRT runs)
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${BUDGET:-540}
RESERVE=${RESERVE:-150}
PY=${PYTHON:-python3}
ARCHIVE=${ARCHIVE:-local/cifar10-jpeg.tar.gz}
DATA=${DATA:-data}
WORK=${WORK:-local/protocol}
RES=${OUT:-$WORK/results}
PARALLEL=${PARALLEL:-10}
read -r -a EXTRA <<<"${EXTRA:-}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/local/protocol_cache/inductor}
FCC=("$PY" -m fcc_lt)

elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET - $(elapsed))); }
say() { echo "[protocol $(elapsed) s] $*"; }
SUMMARY=()
note() { SUMMARY+=("$*"); say "$*"; }

if [ -n "${ALLOW_CPU:-}" ]; then
  DEVICE=cpu
elif "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda
else
  echo "fcc_protocol_gpu: $PY sees no CUDA GPU; this script is for a machine with one (ALLOW_CPU=1 for a dry run)" >&2
  exit 2
fi
mkdir -p "$WORK" "$RES"
RES=$(cd "$RES" && pwd)
"$PY" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '|',
          torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU', '| device $DEVICE')" \
  | tee "$WORK/env.txt"
note "machine: $(cat "$WORK/env.txt"); budget ${BUDGET} s"

# stage1_spec DATASET SPEC OUT: the shipped spec with this run's out, seeds, data root, schedule and extras
stage1_spec() {
  "$PY" - "$2" "$3" "$DATA" "${SEEDS:-}" "${EPOCHS:-}" "$DEVICE" "${EXTRA[@]}" <<'EOF'
import sys
import yaml
spec_file, out, root, seeds, epochs, device, *extra = sys.argv[1:]
spec = yaml.safe_load(open(spec_file))
spec["out"] = out
if seeds.strip():
    spec["seeds"] = [int(s) for s in seeds.split()]
spec["overrides"] = [*spec.get("overrides", []), f"data.root={root}", f"device={device}",
                     *([f"train.epochs={epochs}"] if epochs else []), *extra]
path = f"{out}.yaml"
with open(path, "w") as f:
    yaml.safe_dump(spec, f, sort_keys=False)
val = next(o.split("=", 1)[1] for o in spec["overrides"] if o.startswith("data.val_per_class="))
print(path, ",".join(str(s) for s in spec["seeds"]), val, sep="\t")
EOF
}

finished() { [ -f "$1/eval.json" ] && [ -f "$1/checkpoints/last.pt" ]; }

# protocol DATASET LABEL: stage 1, stage 2, analyses and report of one dataset
protocol() {
  local ds=$1 label=$2 w="$WORK/$1" t0 spec seeds val s pids=()
  mkdir -p "$w/stage2"
  IFS=$'\t' read -r spec seeds val <<<"$(stage1_spec "$ds" "src/fcc_lt/configs/sweeps/fcc_protocol_${ds}_lt.yaml" "$w/stage1")"
  if [ -z "$val" ]; then note "$label: the spec could not be prepared"; return 1; fi
  seeds=${seeds//,/ }
  if [ "$(left)" -le "$RESERVE" ]; then note "$label: skipped, $(left) s left"; return 1; fi
  t0=$(elapsed)
  say "$label stage 1: CE and CE + FCC, seeds $seeds, $PARALLEL at a time, for at most $(( $(left) - RESERVE )) s"
  timeout --signal=TERM --kill-after=30 "$(( $(left) - RESERVE ))" "${FCC[@]}" sweep "$spec" --parallel "$PARALLEL" \
    >"$w/stage1.log" 2>&1
  local done1
  done1=$(for r in "$w"/stage1/*/; do finished "$r" && echo x; done | wc -l)
  note "$label stage 1: $done1 runs finished in $(( $(elapsed) - t0 )) s (log $w/stage1.log)"
  t0=$(elapsed)
  local n=0
  for s in $seeds; do
    for from in ce ce_fcc; do
      local src="$w/stage1/${from}_if100__seed$s"
      finished "$src" || continue
      local dst="$w/stage2/crt_if100__from_${from}__seed$s"
      n=$((n + 1))
      finished "$dst" && continue
      timeout --signal=TERM --kill-after=30 "$(( $(left) > 70 ? $(left) - 60 : 10 ))" \
        env OMP_NUM_THREADS=$(( $(nproc) / PARALLEL > 0 ? $(nproc) / PARALLEL : 1 )) "${FCC[@]}" train \
        "${ds}_lt/crt_if100" "model.init_from=$src/checkpoints/last.pt" "seed=$s" "out=$dst" \
        "data.root=$DATA" "data.val_per_class=$val" "device=$DEVICE" train.eval_every=10 train.progress=false \
        ${CRT_EPOCHS:+"train.epochs=$CRT_EPOCHS"} "${EXTRA[@]}" --overwrite >"$dst.log" 2>&1 &
      pids+=($!)
      if [ "${#pids[@]}" -ge "$PARALLEL" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
    done
  done
  wait
  local done2
  done2=$(for r in "$w"/stage2/*/; do [ -d "$r" ] && finished "$r" && echo x; done | wc -l)
  note "$label stage 2 (cRT): $done2 of $n runs finished in $(( $(elapsed) - t0 )) s"
  t0=$(elapsed)
  timeout --signal=TERM --kill-after=10 "$(( $(left) > 40 ? $(left) - 20 : 20 ))" \
    "${FCC[@]}" analyze "$w" "device=$DEVICE" >"$w/analyze.log" 2>&1
  local rc=$? why=""
  [ "$rc" -eq 124 ] && why=", stopped by the time budget"
  note "$label analyses: exit $rc$why in $(( $(elapsed) - t0 )) s ($(ls "$w"/stage*/*/analysis.json 2>/dev/null | wc -l) runs analysed)"
  t0=$(elapsed)
  "${FCC[@]}" report "$w" --out "$w/report" >"$w/report.md" 2>"$w/report.log"
  note "$label report: exit $? in $(( $(elapsed) - t0 )) s"
  cp "$w/report.md" "$RES/report_${ds}.md" 2>/dev/null
  (cd "$w" && tar czf "$RES/protocol_${ds}.tar.gz" --exclude='*.pt' --exclude='checkpoints' \
    --exclude='events.out.*' --exclude='.lock' report.md report stage1 stage2 ./*.log 2>/dev/null)
}

if [ ! -d "$DATA/cifar-10-batches-py" ]; then
  if [ -f "$ARCHIVE" ]; then
    say "CIFAR-10 from $ARCHIVE into $DATA"
    "$PY" benchmarks/cifar_from_jpeg.py "$ARCHIVE" "$DATA" >"$WORK/data.log" 2>&1 || note "building CIFAR-10 failed: $WORK/data.log"
  fi
fi
if [ -d "$DATA/cifar-10-batches-py" ]; then
  protocol cifar10 "CIFAR-10-LT"
else
  note "CIFAR-10-LT: skipped: no $DATA/cifar-10-batches-py and no $ARCHIVE (copy the JPEG archive to local/, or the official download to $DATA)"
fi
if [ -d "$DATA/cifar-100-python" ]; then
  protocol cifar100 "CIFAR-100-LT"
else
  note "CIFAR-100-LT: skipped: no $DATA/cifar-100-python (the official CIFAR-100 download; none could be had on these machines)"
fi
note "done in $(elapsed) s"
printf '%s\n' "${SUMMARY[@]}" >"$RES/summary.txt"
echo "--- summary ($RES/summary.txt)"
cat "$RES/summary.txt"
for f in "$RES"/report_*.md; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done
exit 0
