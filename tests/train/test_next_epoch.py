import threading
from types import SimpleNamespace

import pytest

from altcap.train.next_epoch import NextEpoch


def test_next_epoch_fetches_its_first_batch_on_another_thread() -> None:
    fetched_on = []

    class Loader:
        def __iter__(self):
            for batch in ("b0", "b1"):
                fetched_on.append(threading.current_thread().name)
                yield batch

    sampler = SimpleNamespace(epoch=0, select_epoch=lambda epoch: setattr(sampler, "epoch", epoch))
    run = SimpleNamespace(train_loader=Loader(), train_sampler=sampler)
    finishing = iter(["last batch of epoch 0"])
    next(finishing)
    upcoming = NextEpoch.start(run, finishing, epoch=1)
    upcoming.thread.join()
    assert sampler.epoch == 1 and fetched_on == ["altcap-next-epoch"]  # fetched before it was asked for
    assert list(upcoming.batches()) == ["b0", "b1"]
    # An epoch whose iterator yields more than its length is a bug, not something to drop silently.
    with pytest.raises(RuntimeError, match="more batches than its length"):
        NextEpoch.start(run, iter(["unexpected"]), epoch=2)
