"""Start the next training epoch's loader before the current epoch's last step has run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any


class NextEpoch:
    """The next epoch's first batch, fetched on a thread while the current epoch's last step runs.

    Each epoch starts a fresh iterator over the loader, and its first batch used to be collated
    while the GPU sat idle: 0.3 s per epoch for BLIP-2 Flan-T5-XL at batch 384 (docs/benchmarks.md,
    session 7). Only with loader workers, which collate in their own processes: nothing on the
    thread draws random numbers that the training step also draws.
    """

    def __init__(self, iterator: Iterator[Any]):
        self.iterator = iterator
        self.first: list[Any] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._fetch_first, name="altcap-next-epoch", daemon=True)
        self.thread.start()

    @classmethod
    def start(cls, run: Any, finishing: Iterator[Any], epoch: int) -> NextEpoch:
        """Close the finishing epoch's iterator (its last batch is in hand) and start `epoch`'s."""
        leftover = next(finishing, None)  # lets accelerate's iterator end, so the next one can begin
        if leftover is not None:
            raise RuntimeError("the training loader yielded more batches than its length says")
        run.train_sampler.select_epoch(epoch)
        return cls(iter(run.train_loader))

    def _fetch_first(self) -> None:
        try:
            self.first = [next(self.iterator)]
        except StopIteration:
            self.first = []
        except BaseException as err:  # re-raised on the training thread by `batches`
            self.error = err

    def batches(self) -> Iterator[Any]:
        """The epoch's batches; the first `next` waits for the thread (counted as data wait)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        yield from self.first
        yield from self.iterator

    def cancel(self) -> None:
        """Wait for the thread and drop the epoch that will not run."""
        self.thread.join()
        close = getattr(self.iterator, "close", None)
        if close is not None:
            close()
