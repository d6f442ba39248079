"""Work items prepared in DataLoader workers: order, the in-process shortcut, whose RNG seeds them."""

from __future__ import annotations

import os

import pytest

from altcap.data.prepared_batches import iter_prepared


def square_with_pid(item: int) -> tuple[int, int]:
    """Module-level (picklable): the prepared value and the process that prepared it."""
    return item * item, os.getpid()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_items_come_back_in_order(num_workers: int) -> None:
    results = list(iter_prepared(list(range(7)), square_with_pid, num_workers, pin_memory=False))
    assert [value for value, _ in results] == [item * item for item in range(7)]
    pids = {pid for _, pid in results}
    if num_workers == 0:
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_one_item_is_prepared_here_without_a_worker() -> None:
    ((value, pid),) = iter_prepared([3], square_with_pid, num_workers=2, pin_memory=False)
    assert value == 9 and pid == os.getpid()


def test_a_private_generator_leaves_the_global_rng_while_none_draws_from_it() -> None:
    import torch

    before = torch.random.get_rng_state()
    list(iter_prepared([1, 2], square_with_pid, 2, False, generator=torch.Generator()))
    assert torch.equal(torch.random.get_rng_state(), before)
    list(iter_prepared([1, 2], square_with_pid, 2, False))
    assert not torch.equal(torch.random.get_rng_state(), before)
