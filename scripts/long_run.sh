#!/usr/bin/env bash
# A long training run on a shared machine: `bash scripts/long_run.sh NAME TRAIN_ARGS...` (e.g. `default-r5 --config
# default --set init=default`) makes ~/.cache/genprint/runs/NAME with a snapshot of this tree's genprint/ (src/, its
# commit in src/COMMIT, so the tree can change while it runs), a run.sh that trains at nice 19 into checkpoints/ and
# copies the newest checkpoint, curve and RESTARTS.txt to /var/tmp/genprint-backup/NAME every 10 minutes, and starts
# it. Run again with the name alone, it resumes the run as it was set up. Every start is logged in RESTARTS.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NAME=${1:?usage: bash scripts/long_run.sh NAME [TRAIN_ARGS...]}
shift
RUN="$HOME/.cache/genprint/runs/$NAME"
if [ ! -f "$RUN/run.sh" ]; then
  [ $# -gt 0 ] || { echo "long_run: $RUN does not exist yet: give the training arguments" >&2; exit 64; }
  mkdir -p "$RUN/src"
  ARGS=$(printf '%q ' "$@")
  cp -r "$ROOT/genprint" "$RUN/src/"
  git -C "$ROOT" rev-parse --short HEAD > "$RUN/src/COMMIT"
  git -C "$ROOT" diff --quiet -- genprint || echo "+ uncommitted changes to genprint/" >> "$RUN/src/COMMIT"
  cat > "$RUN/run.sh" <<EOF
#!/bin/bash
cd "\$(dirname "\$0")"
export GENPRINT_SHARED=\${GENPRINT_SHARED:-$ROOT/../shared} PYTHONPATH=src
B=/var/tmp/genprint-backup/$NAME
mkdir -p \$B
( while sleep 600; do cp checkpoints/last.pt \$B/last.pt.tmp && mv \$B/last.pt.tmp \$B/last.pt; cp checkpoints/curve.jsonl RESTARTS.txt \$B/; done ) &
trap "kill \$!" EXIT
nice -n 19 $ROOT/.venv/bin/python -m genprint train $ARGS--out bundle --checkpoints checkpoints --no-progress --no-track >> train.log 2>&1
EOF
  chmod +x "$RUN/run.sh"
fi
echo "$(date -u +%FT%TZ) started by scripts/long_run.sh on $(head -1 "$RUN/src/COMMIT")" >> "$RUN/RESTARTS.txt"
cd "$RUN" && nohup ./run.sh > /dev/null 2>&1 &
echo "long_run: $RUN (train.log, checkpoints/, RESTARTS.txt; backup /var/tmp/genprint-backup/$NAME)"
