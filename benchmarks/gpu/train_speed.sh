#!/usr/bin/env bash
# Issue #13 on the lent GPU: `python -m benchmarks.train_throughput` with the wheels the machine lacks.
# Run from the folder that holds src/ and benchmarks/; WHEELS (default .whl) holds pydantic & co,
# and bitsandbytes for --qlora. Arguments go to benchmarks.train_throughput; the JSON lands in $OUT.
set -euo pipefail
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHEELS:-.whl}/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" \
  | tee -a $OUT/gpu.txt
python3 -m benchmarks.train_throughput "$@" --out $OUT/train_throughput.json 2>&1 | grep --line-buffered -v "it/s\]$"
