"""Whole batches prepared (images decoded, model inputs built) in DataLoader worker processes.

The feature-cache fill (`train/cache.py`) and `altcap caption` (`infer/batches.py`) both hand one
work item (a batch, or a chunk of one) to a worker and get its prepared inputs back, in order, while
the device works on the previous one. torch is imported only when workers are started, so `data`
stays light at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class PreparedItems:
    """Map-style dataset whose item i is `prepare(items[i])` (one DataLoader item = one work item).

    Sent to every worker, so `prepare` and the items must pickle where processes are spawned: a
    module-level function or a `functools.partial` of one, never a lambda or a closure.
    """

    def __init__(self, items: Sequence[Any], prepare: Callable[[Any], Any]):
        self.items, self.prepare = items, prepare

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.prepare(self.items[index])


def iter_prepared(
    items: Sequence[Any],
    prepare: Callable[[Any], Any],
    num_workers: int,
    pin_memory: bool,
    generator: torch.Generator | None = None,
) -> Iterator[Any]:
    """`prepare(item)` for each item in order: from up to `num_workers` loader processes, or made here.

    Args:
        items: the work items (batches or chunks of images), in order.
        prepare: builds one item's inputs; picklable (see `PreparedItems`).
        num_workers: loader processes (0: each item is prepared here, when asked for).
        pin_memory: page-lock what the workers return (CUDA copies from pinned memory run faster).
        generator: where DataLoader draws its worker seed; None draws it from the global torch RNG
            (the caller decides whether that stream may move).

    Returns:
        An iterator over the prepared items, in the order of `items`.
    """
    dataset = PreparedItems(items, prepare)
    if num_workers == 0 or len(items) < 2:
        # One item has nothing to be prepared alongside it: a worker process would only add its
        # start-up (e.g. `altcap caption` on one image would wait longer for its caption).
        yield from (dataset[index] for index in range(len(dataset)))
        return
    from torch.utils.data import DataLoader

    yield from DataLoader(
        dataset,
        batch_size=None,
        num_workers=min(num_workers, len(items)),
        pin_memory=pin_memory,
        generator=generator,
    )
