#!/usr/bin/env bash
# Download the cp312 manylinux wheels the chat-VLM GPU benchmarks (benchmarks/gpu/chat_vlm.sh) need
# beyond the device image (Python 3.12, torch 2.11, transformers 5.17, peft 0.21, torchvision,
# accelerate, numpy, huggingface_hub, requests, httpx, jinja2, pyyaml, psutil, filelock, triton),
# and print their sizes (64 MiB travel per device call, altcap's tree ~34 MB of it).
#
#   benchmarks/gpu/wheels.sh [DIR]      # default DIR=.whl (kept out of git via .git/info/exclude)
#
# Three folders, so the lead carries only what the device lacks (chat_vlm.sh's first lines print
# which modules import there):
#   DIR/altcap  altcap's own runtime deps (pydantic & co, imagehash and pillow-heif, which the image
#               loader imports) + num2words (SmolVLM's processor imports it; its docopt dep is for
#               its CLI only): ~10.5 MB
#   DIR/trl     TRL 1.16, datasets 4.7, liger-kernel 0.8.5 and datasets' small deps: ~3.5 MB
#   DIR/big     pyarrow + pandas (datasets and TRL import both): ~55 MB; carry only if missing,
#               staged in parts (PART_MIB=28 ../shared/tools/gpu-stage.sh .stage .whl/big)
set -euo pipefail
dir=${1:-.whl}
excl=$(git rev-parse --git-common-dir 2>/dev/null)/info/exclude
[ -f "$excl" ] && { grep -qxF "/${dir%/}/" "$excl" || echo "/${dir%/}/" >>"$excl"; }
get() {  # get SUBDIR SPEC...
  local sub=$1; shift
  mkdir -p "$dir/$sub"
  # pyarrow >= 21 ships manylinux_2_28 wheels only (glibc 2.28+, which the device image has).
  python3 -m pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 --implementation cp --no-deps -d "$dir/$sub" "$@"
}
get altcap pydantic==2.13.4 pydantic-core==2.46.4 typing-inspection==0.4.5 annotated-types==0.8.0 \
  typer==0.29.2 click==8.5.1 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 \
  shellingham==1.5.4 limits==5.8.0 num2words==0.5.14 \
  imagehash==4.3.2 pillow-heif==1.9.0
get trl trl==1.16.0 datasets==4.7.0 liger-kernel==0.8.5 "dill>=0.3.0,<0.4.1" "multiprocess<0.70.19" \
  xxhash "fsspec>=2023.1.0,<=2026.2.0"
get big pyarrow==21.0.0 pandas==2.3.3 python-dateutil pytz tzdata six  # pyarrow 21: the smallest datasets takes
for sub in altcap trl big; do
  printf '%-7s %6s  %s\n' "$sub" "$(du -sh "$dir/$sub" | cut -f1)" "$(ls "$dir/$sub" | tr '\n' ' ')"
done
echo "total $(du -sh "$dir" | cut -f1) in $dir"
