#!/usr/bin/env bash
# The prepared large-batch run for a lent GPU machine (the `device` tool: one call of at most 10 minutes, 15 minutes
# of device time a task, starts included). Two halves:
#
#   here, once:    bash scripts/device_train.sh stage [BUNDLE]
#       copies the shared photos and TAEF2 (about 31 MB) into .device/, which git ignores and the device call carries,
#       and BUNDLE, the weights to start from, stored as float16 (13 MB; without it the shipped bundle, which the tree
#       carries anyway): the tree, .device/ and all must stay under the call's 64 MiB;
#   on the device: bash scripts/device_train.sh train MINUTES [KEY=VALUE ...]
#       (device run: carry [".device"], timeout_s about 2 minutes above MINUTES x 60) trains the `default` recipe from
#       that bundle at batch 32 (KEY=VALUE overrides it and anything else) until MINUTES after its start, then leaves
#       the bundle, the learning curve and the log in $OUT, eight files in all, within what comes back.
#
# Evaluate the bundle here as any other (docs/training.md, "On a lent GPU"); a later call continues from it by staging
# it: `bash scripts/device_train.sh stage /work/.device/.../bundle`.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
stage)
  SHARED=${GENPRINT_SHARED:-../shared}
  [ -d "$SHARED/data/photos" ] && [ -d "$SHARED/models/taef2" ] || {
    echo "device_train: $SHARED has no data/photos or models/taef2 (set GENPRINT_SHARED)" >&2
    exit 64
  }
  [ -z "${2:-}" ] || [ -f "$2/config.json" ] || { echo "device_train: $2 is not a bundle" >&2; exit 64; }
  rm -rf .device && mkdir -p .device/shared/data .device/shared/models
  cp -r "$SHARED/data/photos" .device/shared/data/
  cp -r "$SHARED/models/taef2" .device/shared/models/
  if [ -n "${2:-}" ]; then
    PYTHONPATH=. "${PYTHON:-.venv/bin/python}" -c '
import sys, torch
from genprint.bundle import load_bundle, save_bundle
model = load_bundle(sys.argv[1])
save_bundle(model, ".device/init", train_config=model.bundle_config.get("train"), dtype=torch.float16)' "$2"
  fi
  tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb | tail -1 | cut -f1)
  total=$((tree + $(du -sb .device | cut -f1)))
  echo "device_train: the call will carry $((total / 1048576)) MiB (.device/ and the tree) of its 64"
  [ "$total" -le $((64 * 1048576)) ] || { echo "device_train: over the 64 MiB a call carries" >&2; exit 65; }
  ;;
train)
  MINUTES=${2:?usage: bash scripts/device_train.sh train MINUTES [KEY=VALUE ...]}
  shift 2
  [ -d .device/shared ] || { echo "device_train: no .device/ here: stage it, and carry it" >&2; exit 64; }
  : "${OUT:?device_train: train runs on the device machine, which sets OUT}"
  INIT=default
  [ -d .device/init ] && INIT=.device/init
  SETS=(--set init=$INIT --set batch_size=32)
  for kv in "$@"; do SETS+=(--set "$kv"); done
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/train.log" 2>&1 || true
  export GENPRINT_SHARED=$PWD/.device/shared PYTHONPATH=$PWD PYTHONUNBUFFERED=1
  rm -rf /tmp/genprint-device # each call a fresh run from the staged weights, even on a machine still warm
  status=0
  "${PYTHON:-python3}" -m genprint train --config default "${SETS[@]}" --max-minutes "$MINUTES" --out "$OUT/bundle" \
    --checkpoints /tmp/genprint-device --no-progress --no-track >> "$OUT/train.log" 2>&1 || status=$?
  cp /tmp/genprint-device/curve.jsonl "$OUT/" 2>/dev/null || true
  tail -5 "$OUT/train.log"
  exit $status
  ;;
*)
  echo "usage: bash scripts/device_train.sh stage [BUNDLE] | train MINUTES [KEY=VALUE ...]" >&2
  exit 64
  ;;
esac
