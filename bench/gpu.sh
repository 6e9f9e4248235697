#!/usr/bin/env bash
# One short GPU benchmark of the diffusion engine (SD-Turbo / SDXL-Turbo architectures, RANDOM
# weights: latency real, pixels not), time-boxed to finish in under 9.5 minutes on an H100 (TOTAL_S=540).
#
#   on the GPU machine, from the repo root, with .whl/ carried (bench/gpu_wheels.sh fills it):
#     bash bench/gpu.sh                 # writes $OUT/gpu.log, $OUT/*.json, $OUT/sections.jsonl
#   on a CPU, to check the script's logic with tiny pipelines and sizes (a few minutes):
#     SMOKE=1 OUT=/tmp/gpu-smoke bash bench/gpu.sh
#
# Each section runs under its own `timeout` and its own exit status; one failing or slow section
# never stops the next. Sections run in priority order and each gets at most what is left of
# TOTAL_S. The bench rows are also rewritten to $OUT/<section>.json.tmp after every row, so a
# section cut by its time limit still leaves what it measured.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/swiftshot-gpu}
mkdir -p "$OUT"
SMOKE=${SMOKE:-0}
TOTAL_S=${TOTAL_S:-540}
T0=$(date +%s)
[ "${1:-}" = --serve ] || exec > >(tee -a "$OUT/gpu.log") 2>&1

if [ "$SMOKE" = 1 ]; then
  PY=${PY:-.venv/bin/python}
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  PY=${PY:-python3}
  if [ "${1:-}" = --serve ]; then
    :  # the parent run installed the wheels
  elif ls .whl/*.whl >/dev/null 2>&1; then
    # --no-deps: the machine's torch/transformers/numpy stay; only what it lacks is added.
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
      || echo "wheel install failed (rc=$?)"
  else
    echo "no .whl/ carried: run bench/gpu_wheels.sh and carry .whl"
  fi
  export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
SS=("$PY" -m swiftshot)

left() { echo $(( TOTAL_S - ($(date +%s) - T0) )); }

# section NAME LIMIT_S CMD...: run CMD under min(LIMIT_S, time left), record its status.
section() {
  local name=$1 limit=$2; shift 2
  local budget; budget=$(left)
  [ "$budget" -lt "$limit" ] && limit=$budget
  if [ "$limit" -lt 15 ]; then
    echo "=== $name: skipped (${budget}s left of ${TOTAL_S}s)"
    echo "{\"section\":\"$name\",\"rc\":null,\"skipped\":true}" >> "$OUT/sections.jsonl"
    return 0
  fi
  echo "=== $name (limit ${limit}s, $(date -u +%H:%M:%S))"
  local s; s=$(date +%s)
  set +e
  timeout --kill-after=5 "$limit" "$@"
  local rc=$?
  local took=$(( $(date +%s) - s ))
  echo "=== $name: rc=$rc in ${took}s$([ $rc = 124 ] && echo ' (TIME LIMIT)')"
  echo "{\"section\":\"$name\",\"rc\":$rc,\"seconds\":$took,\"limit\":$limit}" >> "$OUT/sections.jsonl"
  return 0
}

# BENCH NAME ...: one `swiftshot bench models` run (diffusion only) writing $OUT/NAME.json
bench_cmd() { echo "${SS[@]}" bench models --only diffusion --out "$OUT/$1.json"; }

if [ "$SMOKE" = 1 ]; then
  # Tiny pipelines stand in for the architectures; same code paths (SD and SDXL).
  TINY=$OUT/tiny
  "$PY" - "$TINY" <<'EOF'
import sys
from pathlib import Path
from swiftshot.testing.tiny_pipeline import build_tiny_sd, build_tiny_sdxl, build_tiny_taesd
root = Path(sys.argv[1])
if not (root / "sd" / "model_index.json").exists():
    build_tiny_sd(root / "sd"); build_tiny_taesd(root / "sd" / "taesd")
    build_tiny_sdxl(root / "sdxl"); build_tiny_taesd(root / "sdxl" / "taesd")
EOF
  SD=(--model "$TINY/sd"); SDXL=(--model "$TINY/sdxl")
  DEV=cpu; HALF=bf16; PREC=fp32,bf16; S1=64; S2=128; B="1,2"; BIG="1,2,4"; REP=1; BURSTS="1,4"
  MODEL_DIR=$TINY/sd
else
  SD=(--arch sd-turbo); SDXL=(--arch sdxl-turbo)
  DEV=cuda; HALF=fp16; PREC=fp32,fp16,bf16; S1=512; S2=1024; B="1,8"; BIG="1,8,32"; REP=2; BURSTS="1,4,16"
  MODEL_DIR=/tmp/sd-turbo-random
fi

# Serving end to end through a real server (swiftshot.benchmarks.diffusion_serve): bursts of
# 1/4/16 simultaneous requests that the worker batches, fp16, eager and torch.compile
# (reduce-overhead = CUDA graphs), for SD-Turbo and SDXL-Turbo random-weight folders.
# Run as `gpu.sh --serve ARCH COMPILE` by its section, so `timeout` stops it (and its server).
build_folder() {  # build_folder ARCH DIR: random-weight pipeline folder with taesd/
  [ -f "$2/model_index.json" ] && return 0
  "$PY" - "$1" "$2" "$DEV" <<'PYEOF'
import sys, torch
from swiftshot.engines.architectures import build_architecture, build_taesd, RANDOM_WEIGHTS_NOTE
name, path, dev = sys.argv[1:4]
dt = torch.float16 if dev == "cuda" else torch.float32
build_architecture(name, dt, dev).save_pretrained(path, safe_serialization=True)
build_taesd(dt, dev).save_pretrained(path + "/taesd", safe_serialization=True)
open(path + "/RANDOM_WEIGHTS.txt", "w").write(f"{name}: {RANDOM_WEIGHTS_NOTE}\n")
PYEOF
}
serve_e2e() {  # serve_e2e ARCH COMPILE(none|reduce-overhead|default)
  local arch=$1 mode=$2 dir
  if [ "$SMOKE" = 1 ]; then dir=$TINY/${arch%%-*}; [ "$arch" = sd-turbo ] && dir=$TINY/sd
  else dir=/tmp/$arch-random; build_folder "$arch" "$dir" || return 1; fi
  local extra=(); [ "$mode" != none ] && extra=(--compile "$mode")
  "$PY" -m swiftshot.benchmarks.diffusion_serve --model "$dir" --tiny-vae "$dir/taesd" \
    --backends torch --device $DEV --dtype $HALF --size $S1 -n 0 --no-bare --no-cold \
    --bursts "$BURSTS" --repeats $REP "${extra[@]}" --label "$arch $HALF ${mode/none/eager}" \
    --work "$OUT/serve-$arch-$mode" --out "$OUT/serve_${arch}_${mode}.json"
  "$PY" -m swiftshot.benchmarks.diffusion_serve --markdown "$OUT/serve_${arch}_${mode}.json" \
    >> "$OUT/serve-table.md"
}
if [ "${1:-}" = --serve ]; then
  serve_e2e "$2" "$3"; exit $?
fi
section env 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo 'no nvidia-smi'; \
  $PY -c 'import sys, torch, diffusers, transformers; print(sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(), \"diffusers\", diffusers.__version__, \"transformers\", transformers.__version__)'"

# 1-3. Through the server, batch 1/4/16 (issue 12): SD-Turbo compiled (CUDA graphs) and eager,
# then SDXL-Turbo compiled. Compiling is in each server's warm-up and first burst per size.
section serve_sd_turbo_compile 170 bash "$0" --serve sd-turbo reduce-overhead
section serve_sd_turbo_eager 80 bash "$0" --serve sd-turbo none
section serve_sdxl_turbo_compile 200 bash "$0" --serve sdxl-turbo reduce-overhead
# 4. SD-Turbo throughput in half precision: per-stage, VAE vs TAESD, batch 1/8/32, 512² and 1024².
section sd_turbo_half 130 $(bench_cmd sd_turbo_half) "${SD[@]}" --device $DEV --dtypes $HALF \
  --sizes $S1,$S2 --batches $BIG --repeats $REP
# 5. Precision: fp32 reference vs fp16 vs bf16 (deviation columns), 512², batch 1/8.
section sd_turbo_precision 70 $(bench_cmd sd_turbo_precision) "${SD[@]}" --device $DEV \
  --dtypes $PREC --sizes $S1 --batches $B --repeats $REP
# 6. SDXL-Turbo (two text encoders, 2.6B UNet): half precision, 512² and 1024², batch 1/8.
section sdxl_turbo_half 110 $(bench_cmd sdxl_turbo_half) "${SDXL[@]}" --device $DEV --dtypes $HALF \
  --sizes $S1,$S2 --batches $B --repeats $REP
# 7. torch.compile + channels-last (compiling the UNet takes a minute or two): one config.
section sd_turbo_compile 120 $(bench_cmd sd_turbo_compile) "${SD[@]}" --device $DEV \
  --dtypes $HALF+cl,$HALF+compile+cl --sizes $S1 --batches 1 --repeats $REP


[ -f "$OUT/serve-table.md" ] && { echo "=== through the server (paste into docs/PERFORMANCE.md):"; cat "$OUT/serve-table.md"; }
echo "=== done in $(( $(date +%s) - T0 ))s; files in $OUT:"
ls -l "$OUT"
