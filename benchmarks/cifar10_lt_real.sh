#!/usr/bin/env bash
# Shortened-schedule CIFAR-10-LT (IF 100) runs on the real CIFAR-10 (ROOT, default data/cifar10-real: the official
# download, which fcc fetches when it is missing, or a JPEG re-encoded copy from benchmarks/cifar_from_jpeg.py), each method with and without FCC, the two of a pair side by side with one
# thread each. Results: `fcc report runs/real/*` (docs/results.md records them).
#
#   bash benchmarks/cifar10_lt_real.sh [EPOCHS] [METHOD ...]      e.g. 30 ce bsce_drw ldam_drw
#
# AMP=off runs in fp32 (bf16 autocast is fast only on CPUs with AVX512-BF16/AMX; elsewhere use AMP=off).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-30}
shift || true
methods=("${@:-ce bsce_drw ldam_drw drs_balanced remix}")
read -r -a methods <<<"${methods[*]}"
root=${ROOT:-data/cifar10-real}
mkdir -p runs/real
for m in "${methods[@]}"; do
  for variant in "${m}_if100" "${m}_fcc_if100"; do
    out=runs/real/e${epochs}_${variant}
    [ -f "$out/eval.json" ] && continue
    OMP_NUM_THREADS=1 fcc train "cifar10_lt/${variant}" "data.root=$root" "train.epochs=$epochs" \
      "train.amp=${AMP:-bf16}" train.eval_every=5 train.progress=false "out=$out" --overwrite >"$out.log" 2>&1 &
  done
  wait
done
