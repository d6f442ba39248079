#!/usr/bin/env bash
# Issues #4 and #13 on the lent GPU: LLaVA-1.6-Mistral-7B (random weights, real shapes) trained
# through `altcap train` in bf16 LoRA and in QLoRA (4-bit NF4, bitsandbytes); reports samples/s and
# peak GPU memory of the training steps. Run from the folder holding src/ and benchmarks/;
# WHEELS holds pydantic & co and the bitsandbytes wheel; IMAGES a Flickr8k-layout folder.
set -euo pipefail
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHEELS:-.whl}/*.whl 2>&1 \
  | grep -v "already exists" || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
python3 -c "import bitsandbytes, torch, transformers; print(bitsandbytes.__version__, torch.__version__, transformers.__version__)" | tee -a $OUT/gpu.txt
MODEL=/root/llava-1.6-mistral-7b-random
[ -d $MODEL ] || python3 -m benchmarks.random_archs llava-1.6-mistral-7b $MODEL --device cuda
common=(--model-id $MODEL --family llava_next --images ${IMAGES} --num-images 64 --variants altcap --steps ${STEPS:-10} --lora-r 128)
[ -n "${SKIP_BF16:-}" ] || python3 -m benchmarks.train_throughput "${common[@]}" --batch-size ${BF16_BATCH:-4} --out $OUT/llava-bf16.json 2>&1 | grep -v "it/s\]$\|step/s\|s/step" | tail -15
python3 -m benchmarks.train_throughput "${common[@]}" --batch-size ${QLORA_BATCH:-4} --qlora --gradient-checkpointing --out $OUT/llava-qlora.json 2>&1 | grep -v "it/s\]$\|step/s\|s/step" | tail -15
