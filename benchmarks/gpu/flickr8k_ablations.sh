#!/usr/bin/env bash
# Issue #11 ablations on the lent GPU: altcap-mini trained from scratch on Flickr8k train with the
# shipped recipe (src/altcap/configs/altcap-mini-flickr8k.yaml) and one change per variant, the
# same epochs for all, then the 1,000 test images captioned with each of BEAMS (default 3).
# Scoring runs afterwards on the CPU machine (pycocoevalcap needs Java). Every variant starts from
# MODEL (default altcap-mini-parts: untrained projector; altcap-mini-xe for the SCST stage).
# Expects the staged parts joined under /root/w (flickr8k/ and the two model wheels) and WHEELS.
#   benchmarks/gpu/flickr8k_ablations.sh NAME[:key=value[,key=value...]] ...
# e.g. r16:lora.r=16,lora.alpha=32  noprompt:data.prompt=""  vision2:train_vision_blocks=2
#   MODEL=altcap-mini-xe ... scst:objective=scst,train_vision_blocks=0,optim.lr=1e-4,batch_size=64
# (SCST needs ~35 GB per run at batch 64: at most two side by side on an 80 GB GPU)
# A `mini=FILE` pair trains an altcap-mini whose config.json is FILE (e.g. another stride).
# Environment: EPOCHS (1), BEAMS ("3"), SPLITS ("test"), PARALLEL=1 trains the variants side by
# side on the one GPU, TRAIN_TIMEOUT_S stops training there (a checkpoint every 100 steps; running
# the same command again on the same machine resumes it), RETURN_ADAPTER=1 sends the best adapter.
set -euo pipefail
W=/root/w
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ ! -d /tmp/site/gguf ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ${WHEELS:-.whl}/*.whl $W/*.whl
fi
[ -f $W/f8k/manifest.jsonl ] || python3 -m altcap.cli data import flickr8k $W/flickr8k --out $W/f8k --overwrite

run_variant() {  # NAME[:pairs]: train (or resume), then caption each split with each beam width
  local variant=$1 name=${1%%:*} model=${MODEL:-altcap-mini-parts} sets=() caption_sets=() pair pairs
  if [[ $variant == *:* ]]; then
    IFS=, read -ra pairs <<< "${variant#*:}"
    for pair in "${pairs[@]}"; do
      if [[ $pair == mini=* ]]; then
        model=$W/models/$name; mkdir -p $model; cp "${pair#mini=}" $model/config.json
        sets+=(--set "model.model_id=$model"); continue
      fi
      sets+=(--set "$pair")
      [[ $pair == data.prompt=* ]] && caption_sets+=(--set "prompt=${pair#data.prompt=}")
    done
  fi
  local run=$W/runs/$name start=$(date +%s)
  if [ ! -f $run/.trained ]; then
    timeout ${TRAIN_TIMEOUT_S:-100000} python3 -m altcap.cli train src/altcap/configs/altcap-mini-flickr8k.yaml \
      --manifest $W/f8k/manifest.jsonl --output-dir $run --set feature_cache.dir=$W/cache --set model.model_id=$model \
      --set epochs=${EPOCHS:-1} --set save_every_n_steps=100 "${sets[@]}" >> $OUT/$name-train.log 2>&1 \
      && touch $run/.trained || true
    echo "$name train_s=$(( $(date +%s) - start ))" | tee -a $OUT/timings.txt
    cp $run/train_log.jsonl $OUT/$name-train_log.jsonl 2>/dev/null || true
    tail -c 2000 $OUT/$name-train.log > $OUT/$name-train.tail; rm $OUT/$name-train.log
    [ -f $run/.trained ] || { echo "$name: training not finished; run again to resume"; return 0; }
  fi
  local best=$run/best; [ -d $best ] || best=$run/adapter
  for split in ${SPLITS:-test}; do
    for beams in ${BEAMS:-3}; do
      start=$(date +%s)
      python3 -m altcap.cli caption --model-id $model --adapter $best --manifest $W/f8k/manifest.jsonl \
        --split $split --out $OUT/$name-b$beams-${split}_captions.jsonl --batch-size 100 --num-beams $beams \
        --max-new-tokens 30 --min-new-tokens 5 "${caption_sets[@]}" 2>&1 | tail -1
      echo "$name $split beam$beams caption_s=$(( $(date +%s) - start ))" | tee -a $OUT/timings.txt
    done
  done
  # The best adapter comes back in parts under the device's 16 MiB file limit.
  [ -n "${RETURN_ADAPTER:-}" ] && tar czf - -C $best . | split -b 15M -d - $OUT/$name-adapter.tgz.part
  return 0
}

for variant in "$@"; do
  if [ -n "${PARALLEL:-}" ]; then run_variant "$variant" & else run_variant "$variant"; fi
done
wait
# One archive per call: the device returns at most 8 files.
cd $OUT && tar czf ablations-$(date +%H%M%S).tgz --remove-files $(ls | grep -E '_captions.jsonl$|-train_log.jsonl$|-train.tail$|^timings.txt$')
