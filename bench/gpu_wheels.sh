#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels the GPU machine lacks for bench/gpu.sh.
#
# That machine has python 3.12 with torch, transformers, accelerate, numpy, pillow, opencv,
# httpx, prometheus-client, huggingface-hub, safetensors ... but no diffusers and none of
# swiftshot's service stack, and it cannot reach PyPI. Versions are pinned to what this repo's
# .venv runs (checked against /work/.library/device/KINDS.md "Python packages already there").
# Run here (with PyPI), then carry .whl to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEST=.whl
mkdir -p "$DEST"
WHEELS=(
  diffusers==0.42.1
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  pydantic-settings==2.16.3 python-dotenv==1.2.4
  fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 python-multipart==0.0.34
  cachetools==8.0.2 diskcache==5.6.3 orjson==3.13.0 redis==8.1.0
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2
  opentelemetry-semantic-conventions==0.66b2 importlib-metadata==10.2.0
  # Pillow 13 encodes AVIF natively; the machine's own Pillow may be older.
  pillow==13.0.0
)
# --only-binary accepts py3-none-any wheels too; the manylinux tags cover compiled ones.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform any \
  -d "$DEST" "${WHEELS[@]}"
ls -l "$DEST"
du -sh "$DEST"
