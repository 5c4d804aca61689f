#!/usr/bin/env bash
# One slot of a training run on a GPU machine that has no TTS voices, no package registry and
# a cap on what travels (scripts/corpus_transport.py packs corpora as Opus into gpu-data/).
#   bash scripts/device-train.sh CONFIG RUN_DIR STOP_AFTER_S [--set k=v ...]
# Installs carried wheels (.whl/: scripts/device-wheels.sh), unpacks gpu-data/<corpus> into data/<corpus> once, makes
# the synthetic noises and rooms once, then starts the run or resumes it for one slot of STOP_AFTER_S
# seconds (exit 75: resumable). Copies the newest weights and logs to $OUT when set.
set -uo pipefail
CONFIG="$1"; RUN="$2"; STOP="$3"; shift 3
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
for packed in gpu-data/*/; do
  name=$(basename "$packed")
  [ -f "data/$name/manifest.csv" ] || [ -f "data/$name/noise.json" ] && continue
  python3 scripts/corpus_transport.py unpack "$packed" "data/$name" --jobs "$(nproc)" || exit 1
done
# Synthetic noises and simulated rooms are seeded: made there rather than carried.
rate=$(sed -n 's/^ *sample_rate: *\([0-9]*\).*/\1/p' "$CONFIG" | head -1)
noise=$(sed -n 's/^ *noise: *\(data\/noise[0-9]*k\).*/\1/p' "$CONFIG")
if [ -n "$noise" ] && [ ! -d "$noise" ]; then
  python3 -m cocktailparty.cli -q corpus noise --out "$noise" --sample-rate "$rate" || exit 1
fi
rooms=$(sed -n 's/^ *rooms: *\(data\/rooms[0-9]*k\).*/\1/p' "$CONFIG")
for arg in "$@"; do case "$arg" in data.rooms=*) rooms="${arg#data.rooms=}";; esac; done
if [ -n "$rooms" ] && [ ! -d "$rooms" ]; then
  # 1000 rooms, as the README builds them: a room's split follows from its index and the bank's
  # size, so a bank of another size would put the benchmark's test rooms into training.
  python3 -m cocktailparty.cli -q corpus rooms --out "$rooms" --rooms 1000 --sample-rate "$rate" || exit 1
fi
if [ -f "$RUN/config.yaml" ] && ! ls -d "$RUN"/checkpoints/step-* >/dev/null 2>&1; then
  # A run that died before its first checkpoint (e.g. a failed graph capture) has nothing to
  # resume from: start it again rather than fail on --resume.
  echo "device-train: $RUN has no checkpoint; starting it again" >&2
  rm -rf "$RUN"
fi
if [ -f "$RUN/config.yaml" ]; then
  python3 -m cocktailparty.cli train --resume "$RUN" --stop-after "$STOP"
else
  python3 -m cocktailparty.cli train --config "$CONFIG" --out "$RUN" --stop-after "$STOP" "$@"
fi
status=$?
if [ -n "${OUT:-}" ]; then
  latest=$(ls -d "$RUN"/checkpoints/step-* 2>/dev/null | tail -1)
  [ -n "$latest" ] && cp "$latest/model.safetensors" "$OUT/latest.safetensors"
  cp "$RUN"/best.safetensors "$RUN"/log.csv "$RUN"/steps.csv "$OUT"/ 2>/dev/null
fi
echo "device-train: train exited $status"
exit $status
