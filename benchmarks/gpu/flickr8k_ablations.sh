#!/usr/bin/env bash
# Issue #11 ablations on the lent GPU: altcap-mini trained from scratch on Flickr8k train with the
# shipped recipe (src/altcap/configs/altcap-mini-flickr8k.yaml) and one change per variant, the
# same epochs for all, then the 1,000 test images captioned with 3 beams. Scoring runs afterwards
# on the CPU machine (pycocoevalcap needs Java). Run from a tree WITHOUT
# src/altcap/models/mini_checkpoint/base_adapter, so every variant starts from an untrained projector.
# Expects the staged parts joined under /root/w (flickr8k/ and the two model wheels) and WHEELS.
#   benchmarks/gpu/flickr8k_ablations.sh NAME[:key=value[,key=value...]] ...
# e.g. r16:lora.r=16,lora.alpha=32  noprompt:data.prompt=""  vision2:train_vision_blocks=2
set -euo pipefail
W=/root/w
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ ! -d /tmp/site/gguf ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHEELS:-.whl}/*.whl $W/*.whl
fi
[ -f $W/f8k/manifest.jsonl ] || python3 -m altcap.cli data import flickr8k $W/flickr8k --out $W/f8k --overwrite
for variant in "$@"; do
  name=${variant%%:*}; sets=(); caption_sets=()
  if [[ $variant == *:* ]]; then
    IFS=, read -ra pairs <<< "${variant#*:}"
    for pair in "${pairs[@]}"; do
      sets+=(--set "$pair")
      [[ $pair == data.prompt=* ]] && caption_sets+=(--set "prompt=${pair#data.prompt=}")
    done
  fi
  start=$(date +%s)
  python3 -m altcap.cli train src/altcap/configs/altcap-mini-flickr8k.yaml --manifest $W/f8k/manifest.jsonl \
    --output-dir $W/runs/$name --set feature_cache.dir=$W/cache --set epochs=${EPOCHS:-1} "${sets[@]}" \
    > $OUT/$name-train.log 2>&1 || { tail -30 $OUT/$name-train.log; exit 1; }
  train_s=$(( $(date +%s) - start ))
  best=$W/runs/$name/best; [ -d $best ] || best=$W/runs/$name/adapter
  start=$(date +%s)
  python3 -m altcap.cli caption --model-id altcap-mini --adapter $best --manifest $W/f8k/manifest.jsonl \
    --split test --out $OUT/$name-test_captions.jsonl --batch-size 100 --num-beams 3 \
    --max-new-tokens 30 --min-new-tokens 5 "${caption_sets[@]}" 2>&1 | tail -1
  echo "$name train_s=$train_s caption_s=$(( $(date +%s) - start ))" | tee -a $OUT/timings.txt
  cp $W/runs/$name/train_log.jsonl $OUT/$name-train_log.jsonl
  # RETURN_ADAPTER=1 sends the best adapter back in parts under the device's 16 MiB file limit.
  [ -n "${RETURN_ADAPTER:-}" ] && tar czf - -C $best . | split -b 15M -d - $OUT/$name-adapter.tgz.part
  tail -c 2000 $OUT/$name-train.log > $OUT/$name-train.tail && rm $OUT/$name-train.log
done
# One archive per call: the device returns at most 8 files.
cd $OUT && tar czf ablations-$(date +%H%M%S).tgz --remove-files *-test_captions.jsonl* *-train_log.jsonl *-train.tail
