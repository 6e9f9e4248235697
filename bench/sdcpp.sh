#!/usr/bin/env bash
# stable-diffusion.cpp side by side with swiftshot's diffusion engine (issue 12).
#
# One command, re-using the build when it is already there:
#   bench/sdcpp.sh            # build (first time) + convert the model (first time) + measure
#   bench/sdcpp.sh build      # only build
#   bench/sdcpp.sh convert    # only convert the model
#   bench/sdcpp.sh measure    # only measure sd.cpp (needs build + model)
#   bench/sdcpp.sh flags      # sd.cpp's server again with its speed switches (fa, direct conv)
#   bench/sdcpp.sh ours       # our server on the same model (OpenVINO bf16, quantize int8)
#   bench/sdcpp.sh table      # the side-by-side table from the JSONs
#
# Builds stable-diffusion.cpp from source OUTSIDE the repo (never committed), CPU backend with
# AVX-512 (F, BW, VL, VBMI, VNNI, BF16), from the stored snapshots:
#   SDCPP_GIT (bare git dir of leejet/stable-diffusion.cpp) and GGML_GIT (ggml-org/ggml, which
#   holds the submodule's commit). The snapshot of sd.cpp lacks the blobs of some tokenizer
#   vocabularies (gemma, gpt-oss, mistral, qwen2, t5, umt5); SD 2.1 uses only CLIP's (present),
#   so those headers are stubbed with an empty string.
# The model: our SD 2.1-architecture random-weight real-size diffusers folder (the one the
# diffusion benchmark builds: swiftshot.benchmarks.diffusion.make_real_size_pipeline) converted
# to one original-layout (LDM) safetensors file + the TAESD decoder, by
# src/swiftshot/benchmarks/sdcpp_convert.py; then sd.cpp's CLI and sd-server are timed
# (512², 1 step, euler, cfg 1, TAESD), median of N after a warm-up, f16 and q8_0 weights.
# Results: bench/results/sdcpp.json, sdcpp-ours-{none,int8}.json (with the machine and load
# averages). Every timed step runs under flock /tmp/swiftshot-bench.lock.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_ROOT="${SDCPP_BUILD_ROOT:-/work/sdcpp-build}"
SDCPP_GIT="${SDCPP_GIT:-/work/.mirror/leejet+stable-diffusion.cpp/repo}"
GGML_GIT="${GGML_GIT:-/work/.mirror/ggml-org+ggml/repo}"
SDCPP_REV="${SDCPP_REV:-97d2990807fe6d558e395f8764198d7c7e7b411c}"
JOBS="${JOBS:-2}"
PY="${PY:-$HERE/../../main/.venv/bin/python}"
[ -x "$PY" ] || PY="${HERE}/.venv/bin/python"
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
STEP="${1:-all}"

SRC="$BUILD_ROOT/src"
BLD="$BUILD_ROOT/build"
BIN="$BLD/bin"

build() {
  if [ -x "$BIN/sd-server" ] && [ -x "$BIN/sd-cli" -o -x "$BIN/sd" ]; then
    echo "sdcpp: build present in $BLD (delete it to rebuild)"; return
  fi
  mkdir -p "$BUILD_ROOT"
  if [ ! -f "$SRC/CMakeLists.txt" ]; then
    rm -rf "$SRC"; mkdir -p "$SRC"
    # assets/ and the big vocab headers of other tokenizers are not in the snapshot
    git --git-dir="$SDCPP_GIT" archive "$SDCPP_REV" -- . ':(exclude)assets' \
      ':(exclude)src/tokenizers/vocab/gemma*' ':(exclude)src/tokenizers/vocab/gpt_oss*' \
      ':(exclude)src/tokenizers/vocab/mistral*' ':(exclude)src/tokenizers/vocab/qwen*' \
      ':(exclude)src/tokenizers/vocab/t5.hpp' ':(exclude)src/tokenizers/vocab/umt5.hpp' \
      | tar -x -C "$SRC"
    local ggml_rev
    ggml_rev="$(git --git-dir="$SDCPP_GIT" ls-tree "$SDCPP_REV" ggml | awk '{print $3}')"
    echo "sdcpp: ggml submodule at $ggml_rev"
    rm -rf "$SRC/ggml"; mkdir -p "$SRC/ggml"
    git --git-dir="$GGML_GIT" archive "$ggml_rev" | tar -x -C "$SRC/ggml"
    echo "$ggml_rev" > "$BUILD_ROOT/ggml.rev"
    echo "$SDCPP_REV" > "$BUILD_ROOT/sdcpp.rev"
  fi
  local v="$SRC/src/tokenizers/vocab"
  stub() { [ -f "$v/$1" ] || printf 'static const unsigned char %s[] = {0x00};\n' "$2" > "$v/$1"; }
  stub gemma2_merges.hpp gemma2_merges_utf8_c_str
  stub gemma2_vocab.hpp gemma2_vocab_json_utf8_c_str
  stub gemma_merges.hpp gemma_merges_utf8_c_str
  stub gemma_vocab.hpp gemma_vocab_json_utf8_c_str
  stub gpt_oss_merges.hpp gpt_oss_merges_utf8_c_str
  stub gpt_oss_vocab.hpp gpt_oss_vocab_json_utf8_c_str
  stub mistral_merges.hpp mistral_merges_utf8_c_str
  stub mistral_vocab.hpp mistral_vocab_json_utf8_c_str
  stub qwen_merges.hpp qwen2_merges_utf8_c_str
  stub t5.hpp t5_tokenizer_json_str
  stub umt5.hpp umt5_tokenizer_json_str
  cmake -S "$SRC" -B "$BLD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DSD_WEBP=OFF -DSD_WEBM=OFF -DSD_SERVER_BUILD_FRONTEND=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
    -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
    -DGGML_OPENMP=ON | tail -5
  nice -n 10 cmake --build "$BLD" -j "$JOBS"
  ls -la "$BIN"
}

convert() {
  cd "$HERE"
  PYTHONPATH="$HERE/src" nice -n 10 "$PY" bench/sdcpp_convert.py --out "$BUILD_ROOT/model" \
    --diffusers "${SDCPP_DIFFUSERS:-/tmp/dfx/sd-turbo-random}"
}

measure() {
  cd "$HERE"
  PYTHONPATH="$HERE/src" flock /tmp/swiftshot-bench.lock "$PY" bench/sdcpp_bench.py \
    --bin "$BIN" --model "$BUILD_ROOT/model" --build-root "$BUILD_ROOT" \
    --out "$HERE/bench/results/sdcpp.json" ${SDCPP_MEASURE_ARGS:-}
}

# sd.cpp's own speed switches (flash attention in the UNet, direct convolutions instead of
# im2col + matmul): its server once more with them, f16.
flags() {
  cd "$HERE"
  PYTHONPATH="$HERE/src" flock /tmp/swiftshot-bench.lock "$PY" bench/sdcpp_bench.py \
    --bin "$BIN" --model "$BUILD_ROOT/model" --build-root "$BUILD_ROOT" --paths server --wtypes f16 \
    --extra="--diffusion-fa --diffusion-conv-direct --vae-conv-direct" \
    --out "$HERE/bench/results/sdcpp-flags.json"
}

# Ours, the same minutes: swiftshot's server (OpenVINO bf16, then quantize int8) on the same
# diffusers folder, 512², 1 step, TAESD, 3 new prompts after the start-up warm-up render.
# The converted IR is reused from OURS_OV_DIR (converted on the first run: minutes).
ours() {
  cd "$HERE"
  local ov="${OURS_OV_DIR:-/tmp/dfx/ov}" model="${SDCPP_DIFFUSERS:-/tmp/dfx/sd-turbo-random}"
  local q
  for q in none int8; do
    PYTHONPATH="$HERE/src" flock /tmp/swiftshot-bench.lock "$PY" -m swiftshot.benchmarks.diffusion_serve \
      --model "$model" --backends openvino --openvino-dir "$ov" --no-cold --no-bare -n 3 \
      --quantize "$q" --label "swiftshot openvino bf16$([ $q = int8 ] && echo ' + quantize int8')" \
      --out "$HERE/bench/results/sdcpp-ours-$q.json"
  done
}

table() {
  cd "$HERE"
  "$PY" bench/sdcpp_bench.py --table "$HERE/bench/results/sdcpp.json" "$HERE/bench/results/sdcpp-flags.json" \
    "$HERE/bench/results/sdcpp-ours-none.json" "$HERE/bench/results/sdcpp-ours-int8.json"
}

case "$STEP" in
  build) build ;;
  convert) convert ;;
  measure) measure ;;
  flags) flags ;;
  ours) ours ;;
  table) table ;;
  all) build; convert; measure; flags; ours; table ;;
  *) echo "usage: $0 [all|build|convert|measure|flags|ours|table]" >&2; exit 2 ;;
esac; exit $?  # on this line: bash reads a script as it runs, so an edit meanwhile is not read
