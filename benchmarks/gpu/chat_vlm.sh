#!/usr/bin/env bash
# Issue #26 items 5 and 6 on the lent GPU, in ONE call (~6 min on an H100 with the defaults):
#   1. recipe_memory     every shipped chat recipe's measured GPU memory (altcap train, 2 steps)
#   2. chat_vlm_caption  HF batched generate vs altcap caption, Qwen2.5-VL-3B shapes, greedy-id match
#   3. chat_vlm_train    TRL SFTTrainer + liger-kernel vs altcap train, Qwen2.5-VL-3B shapes
# All on full-size architectures with random weights (benchmarks/chat_archs.py), built on the GPU
# once into $MODELS (tmpfs when it has room) and shared by the three steps. Each step has its own
# time limit and log, so one failing or running long still leaves the others' JSON in $OUT.
#
# Before: benchmarks/gpu/wheels.sh (here), then carry .whl/altcap + .whl/trl with the tree
# (`carry: [".whl"]`, ~8 MB). If the first lines below say pyarrow/pandas are missing, stage
# .whl/big into $W/big first (PART_MIB=28 ../shared/tools/gpu-stage.sh .stage .whl/big; one run a
# part: `mkdir -p /root/w && cp .stage/p*/part* /root/w/`; then `cat /root/w/part* | tar xf - -C /root/w
# && mv /root/w/.whl/big /root/w/big`).
#   benchmarks/gpu/chat_vlm.sh                      # from the repository root on the device
#   STEPS=3 ROWS=1024 EPOCHS=3 SKIP=recipe_memory benchmarks/gpu/chat_vlm.sh   # knobs (see below)
#   LEAN_AB=1 MIX=1 FILL_AB=64: altcap with lean activations, Qwen2.5-VL's length-mix row, and
#   altcap with a 64-image cache fill batch; AB=2: lean activations on/off, alternating (below).
#   CAPTION_ARGS="--skip-vision-loop": extra chat_vlm_caption options; TRAIN_ARGS="--altcap-set
#   cuda_graphs=true": extra chat_vlm_train options.
#   ALT_TRAIN_ARGS="--altcap-cache off;...": more altcap-alone training rows per arch, one per ';' part.
#   GPU_TESTS=1: the chat speed parts' CUDA-only tests first (they skip on a CPU); GPU_TEST_FILES
#   picks some of them, GPU_TEST_K a -k expression.
#   PROFILE_TRAIN_SETS="--set cuda_graphs=true": extra settings of the profiled training steps.
#   PROFILE_CHAT=1: profiler tables of Qwen2.5-VL's (PROFILE_ARCH's) tower, generate and train steps (below).
#   CAPTION_WORKERS=8: altcap's image-preparing processes (the lent machine has 16 cores; HF's
#   notebook baseline prepares on its main thread, as people run it); HF_BATCHES=128,256 saves time.
set -uo pipefail
W=${W:-/root/w}
OUT=${OUT:-/tmp/chat-vlm-out}
mkdir -p "$OUT" "$OUT/logs"
# PROFILE=1: cProfile altcap's timed parts into logs/profiles (benchmarks.phase_timer.host_profile).
# Diagnostic only: the profiler slows altcap's host side, so that run's ratios are not reported.
[ -n "${PROFILE:-}" ] && export BENCH_PROFILE_DIR="$OUT/logs/profiles"
# USE_HUB_KERNELS=0: transformers >= 5.25 kernelizes at load by default, which needs the `kernels`
# package and the hub; the device has neither, so both sides run transformers' own layers.
# transformers >= 5.25 (altcap's chat feature cache) goes to its own folder, first on altcap's path;
# TRL's side keeps the device's transformers, since liger-kernel 0.8.5 imports output classes 5.25
# renamed (TRL_PYTHONPATH, read by chat_vlm_train).
export PYTHONPATH=/tmp/tf:/tmp/site:$PWD/src:$PWD TRL_PYTHONPATH=/tmp/site:$PWD/src:$PWD \
  PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false USE_HUB_KERNELS=0
tf_wheels=$(ls ${WHEELS:-.whl}/tf/*.whl 2>/dev/null)
[ -n "$tf_wheels" ] && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/tf $tf_wheels 2>&1 \
  | grep -v "already exists" | tail -3
wheels=$(ls ${WHEELS:-.whl}/altcap/*.whl ${WHEELS:-.whl}/trl/*.whl 2>/dev/null)
python3 -c "import pyarrow, pandas" 2>/dev/null || wheels="$wheels $(ls $W/big/*.whl ${WHEELS:-.whl}/big/*.whl 2>/dev/null)"
[ -n "${wheels// /}" ] && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $wheels 2>&1 \
  | grep -v "already exists" | tail -3
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 - <<'EOF'
import importlib
for name in ("torch", "transformers", "peft", "accelerate", "torchvision", "pydantic", "trl", "datasets",
             "liger_kernel", "pyarrow", "pandas", "num2words", "triton", "imagehash", "pillow_heif",
             "matplotlib", "altcap.train.run", "altcap.infer.caption"):
    try:
        print(f"{name} {getattr(importlib.import_module(name), '__version__', '?')}")
    except Exception as err:
        print(f"{name} MISSING ({type(err).__name__}: {err})")
EOF
} 2>&1 | tee "$OUT/gpu.txt"
# Models on tmpfs when it has room for all five (~35 GB): saving and loading them is most of a
# recipe's time on disk.
shm_gb=$(df -BG --output=avail /dev/shm 2>/dev/null | tail -1 | tr -dc '0-9')
MODELS=${MODELS:-$([ "${shm_gb:-0}" -ge 45 ] && echo /dev/shm/chatbench || echo /root/chatbench)}
# Result names as the benchmarks' defaults in benchmarks/results/ (docs/benchmarks.md cites them).
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | grep -oi 'h100\|h200' | tr A-Z a-z)
card=${card:-cpu}
echo "models in $MODELS" | tee -a "$OUT/gpu.txt"

step() {  # step NAME[-ARCH] LIMIT_S COMMAND...: run, log, and say how it ended (SKIP names NAME)
  local name=$1 limit=$2; shift 2
  case ",${SKIP:-}," in *",${name%%-*},"*) echo "== $name skipped"; return;; esac
  echo "== $name $(date -u +%T) (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  echo "== $name exit $? $(date -u +%T)"
  grep -v "it/s\]\|s/it\]\|Warning\|warn(" "$OUT/logs/$name.log" | tail -${TAIL:-12}
}
# TINY=1: the same three steps on tiny models on a CPU (a dry run of this script before the device).
tiny_recipes=() tiny_caption=() tiny_train=()
if [ -n "${TINY:-}" ]; then
  tiny_recipes=(--tiny --recipes paligemma2-3b-pt-224,qwen2.5-vl-3b-instruct)
  tiny_caption=(--tiny --hf-batch-sizes 2,4 --altcap-batch-size 2 --num-workers 0)
  tiny_train=(--tiny --batch-size 2 --num-workers 0 --no-liger)
fi
# GPU_TESTS=1: first the CUDA-only tests of the chat VLMs' speed parts (graphed decode steps, liger's
# vision rotary, varlen vision attention, rope index), which skip on a CPU.
gpu_test_files=${GPU_TEST_FILES:-"tests/models/test_graphed_chat_decoding.py tests/models/test_fused_vision_rotary.py
  tests/models/test_vision_attention.py tests/models/test_rope_index.py tests/models/test_graphed_chat_training.py"}
[ -n "${GPU_TESTS:-}" ] && step gpu_tests ${TESTS_LIMIT_S:-240} python3 -m pytest -q -p no:cacheprovider -rs \
  -k "${GPU_TEST_K:-}" $gpu_test_files
step recipe_memory ${RECIPE_LIMIT_S:-220} python3 -m benchmarks.recipe_memory --models-root "$MODELS" \
  --steps ${STEPS:-2} --timeout-s ${RECIPE_S:-90} --out "$OUT/recipe-memory-$card.json" "${tiny_recipes[@]}"
# ARCHS="qwen2.5-vl-3b-instruct smolvlm2-2.2b-instruct" adds issue #26's SmolVLM2 ratios (~3 min more).
for arch in ${ARCHS:-qwen2.5-vl-3b-instruct}; do
  step chat_vlm_caption-$arch ${CAPTION_LIMIT_S:-140} python3 -m benchmarks.chat_vlm_caption --arch $arch \
    --model-dir "$MODELS/$arch" --rows ${ROWS:-512} --hf-batch-sizes ${HF_BATCHES:-64,128,256} \
    --num-workers ${CAPTION_WORKERS:-8} --out "$OUT/chat-vlm-caption-$arch-$card.json" ${CAPTION_ARGS:-} "${tiny_caption[@]}"
  step chat_vlm_train-$arch ${TRAIN_LIMIT_S:-190} python3 -m benchmarks.chat_vlm_train --arch $arch \
    --model-dir "$MODELS/$arch" --samples ${SAMPLES:-256} --epochs ${EPOCHS:-1} --altcap-cache ${ALTCAP_CACHE:-auto} \
    --timeout-s ${SIDE_S:-90} --out "$OUT/chat-vlm-train-$arch-$card.json" ${TRAIN_ARGS:-} "${tiny_train[@]}"
  # ALT_TRAIN_ARGS="--altcap-cache off;--host-profile-dir \$OUT/logs/profiles": altcap alone once
  # more per ';'-separated set of options, the same call (result ...-alt1.json, -alt2.json, ...).
  IFS=';' read -ra alts <<< "${ALT_TRAIN_ARGS:-}"
  for i in "${!alts[@]}"; do
    n=$((i + 1))
    step chat_vlm_train_alt$n-$arch ${ALT_LIMIT_S:-100} python3 -m benchmarks.chat_vlm_train --arch $arch \
      --model-dir "$MODELS/$arch" --samples ${SAMPLES:-256} --epochs ${EPOCHS:-1} --timeout-s ${SIDE_S:-90} \
      --sides altcap --out "$OUT/chat-vlm-train-$arch-$card-alt$n.json" $(eval echo ${alts[$i]}) "${tiny_train[@]}"
  done
done
train_args=(--model-dir "$MODELS/qwen2.5-vl-3b-instruct" --samples ${SAMPLES:-256} --epochs ${EPOCHS:-1} \
  --timeout-s ${SIDE_S:-90} "${tiny_train[@]}")
qwen_train() {  # qwen_train NAME TAG LIMIT_S ARGS...: a Qwen2.5-VL training step, result ...-$card-TAG.json
  local name=$1 tag=$2 limit=$3; shift 3
  step $name $limit python3 -m benchmarks.chat_vlm_train "$@" "${train_args[@]}" \
    --out "$OUT/chat-vlm-train-qwen2.5-vl-3b-instruct-$card-$tag.json"
}
# LEAN_AB=1: altcap alone with lean activations (off by default), the same call, for what they save.
[ -n "${LEAN_AB:-}" ] && qwen_train chat_vlm_train_lean_on lean-on ${LEAN_LIMIT_S:-100} \
  --sides altcap --altcap-set lean_activations=true
# AB=N: N pairs of altcap-alone runs, lean activations off then on, alternating (a run's place in the
# call shifts its time, so an A/B of one option alternates rather than runs once each).
for pair in $(seq 1 ${AB:-0}); do
  for lean in false true; do
    qwen_train chat_vlm_train_ab ab$pair-lean-$lean ${LEAN_LIMIT_S:-100} \
      --sides altcap --altcap-set lean_activations=$lean
  done
done
# MIX=1: issue #26's length-mix row: Qwen2.5-VL on Flickr8k's caption lengths (mean 11 words), altcap
# batching by length as its users would for such data (group_by_length) and with lean activations
# (session 13's row), TRL as configured above.
[ -n "${MIX:-}" ] && qwen_train chat_vlm_train_mix flickr8k-lengths ${TRAIN_LIMIT_S:-190} \
  --caption-lengths flickr8k --altcap-set group_by_length=true --altcap-set lean_activations=true
# FILL_AB=N: altcap alone with the feature-cache fill encoding N images a call (phase_seconds split).
[ -n "${FILL_AB:-}" ] && qwen_train chat_vlm_train_fill fill$FILL_AB ${LEAN_LIMIT_S:-100} \
  --sides altcap --altcap-set feature_cache.batch_size=$FILL_AB
# PROFILE_CHAT=1: torch-profiler tables (benchmarks.profile_gpu, into logs/) for PROFILE_ARCH
# (Qwen2.5-VL unless set): the frozen tower alone (encode) and one `generate` at the caption batch,
# and a training step from cached features with lean activations off and on. PROFILE_MODES picks
# some of "encode caption train" (all three unless set).
if [ -n "${PROFILE_CHAT:-}" ]; then
  parch=${PROFILE_ARCH:-qwen2.5-vl-3b-instruct}
  pmodel=$MODELS/$parch pimgs=$MODELS/profile-images pbatch=${PROFILE_BATCH:-256}
  python3 -c "import sys; from pathlib import Path; from benchmarks.chat_bench import ensure_model
from benchmarks.chat_data import write_random_images
ensure_model(sys.argv[4], Path(sys.argv[1]), tiny=bool(sys.argv[3]))
write_random_images(Path(sys.argv[2]), 256, (448, 448))" "$pmodel" "$pimgs" "${TINY:-}" "$parch"
  for mode in ${PROFILE_MODES:-encode caption train}; do
    [ $mode = encode ] && step patch_embed_speed 60 python3 -m benchmarks.patch_embed_speed \
      $([ -n "${TINY:-}" ] && echo --patches 256) --out "$OUT/logs/patch-embed-speed-$card.json"
    [ $mode != train ] && step profile_$mode ${PROFILE_LIMIT_S:-120} python3 -m benchmarks.profile_gpu $mode \
      --model-id "$pmodel" --images "$pimgs" --batch-size $pbatch --num-beams 1 --steps 1 --warmup-steps 1 \
      $([ $mode = encode ] && echo --trace) --out "$OUT/logs/profile-$mode-$parch-$card.json"
    [ $mode = train ] && for lean in false true; do
      step profile_train_lean_$lean ${PROFILE_LIMIT_S:-120} python3 -m benchmarks.profile_gpu train \
        --model-id "$pmodel" --images "$pimgs" --batch-size ${PROFILE_TRAIN_BATCH:-16} --steps 5 --warmup-steps 3 \
        --set lean_activations=$lean --set model.max_image_pixels=$((448 * 448)) ${PROFILE_TRAIN_SETS:-} \
        --out "$OUT/logs/profile-train-lean-$lean-$parch-$card.json"
    done
  done
fi
# At most 8 files come back per call: the JSONs, gpu.txt and one archive of the logs.
tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"
ls -la "$OUT"
