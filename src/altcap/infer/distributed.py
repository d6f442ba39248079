"""`altcap caption` on several processes: the images are split across them with accelerate, each
process appends to its own shard file, and the main process merges the shards into the one
captions file in manifest order.

Works under any accelerate launch (`--gpus N` re-runs the command through `accelerate launch`;
a user's own `accelerate launch -m altcap.cli caption ...` with a multi-node config works the
same, given a filesystem all nodes share for `out`). Resumable like one process: a killed run
leaves its shards (each line fsynced), and the next run first folds them into `out`, so no
finished image is captioned again, whatever the new process count.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from altcap.infer.captions_file import CaptionRecord, append_captions, read_captions

SHARD_GLOB = "{name}.shard-*.jsonl"


def shard_path(out: Path, rank: int) -> Path:
    """The shard file process `rank` appends to: `<out>.shard-<rank>.jsonl` beside `out`."""
    return out.with_name(f"{out.name}.shard-{rank}.jsonl")


def find_shards(out: Path) -> list[Path]:
    """Shard files beside `out` from this run or a killed earlier one (any process count)."""
    return sorted(out.parent.glob(SHARD_GLOB.format(name=out.name))) if out.parent.is_dir() else []


def merge_shards(out: Path, order: list[str], drop_torn_last_line: Callable[[Path], int]) -> int:
    """Fold every shard into `out`, all records in `order` (the manifest's), then delete the shards.

    The merged file is written beside `out` and renamed over it, so a kill during the merge leaves
    either the old file and its shards or the new file: never a caption lost or doubled.

    Args:
        out: the captions file (may not exist yet).
        order: image keys in manifest order; records of other images keep their place after them.
        drop_torn_last_line: cuts a half-written last line (a process killed mid-write).

    Returns:
        How many records the shards added.
    """
    shards = find_shards(out)
    if not shards:
        return 0
    records: dict[str, CaptionRecord] = {}
    for path in [out, *shards] if out.is_file() else shards:
        drop_torn_last_line(path)
        for record in read_captions(path):
            records.setdefault(record.image, record)
    rank = {key: index for index, key in enumerate(order)}
    ordered = sorted(records.values(), key=lambda r: rank.get(r.image, len(rank)))
    tmp = out.with_name(out.name + ".merge.tmp")
    tmp.unlink(missing_ok=True)  # left by a merge killed before its rename
    append_captions(tmp, ordered)
    before = len(read_captions(out)) if out.is_file() else 0
    os.replace(tmp, out)
    for path in shards:
        path.unlink()
    return len(ordered) - before


def process_state() -> Any | None:
    """accelerate's `PartialState` when this process is one of several, else None (one process)."""
    from altcap.launch import is_distributed_worker

    if not is_distributed_worker():
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # Accelerator reads ACCELERATE_USE_CPU itself; PartialState must be told, or each CPU worker
    # thinks it is alone.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    return state if state.num_processes > 1 else None
