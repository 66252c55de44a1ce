"""The training loop collates the next batch in a worker thread: same batches, same order,
errors surface in the caller."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from evoke.heads.train import _batches, prefetched


def test_prefetched_batches_equal_the_plain_loop_and_run_in_the_worker():
    data = list(range(37))
    order = list(_batches(len(data), 5, np.random.default_rng(3)))
    threads = set()

    def collate(samples):
        threads.add(threading.current_thread().name)
        return [x * 10 for x in samples]

    plain = list(prefetched(order, data, collate, None))
    with ThreadPoolExecutor(1, thread_name_prefix="worker") as pool:
        ahead = list(prefetched(order, data, collate, pool))
    assert [list(i) for i, _ in ahead] == [list(i) for i, _ in plain]
    assert [b for _, b in ahead] == [b for _, b in plain]
    assert sorted(x for _, b in ahead for x in b) == [x * 10 for x in data]
    assert any(t.startswith("worker") for t in threads)


def test_a_collate_error_surfaces_in_the_caller():
    def collate(samples):
        if 7 in samples:
            raise ValueError("bad sample 7")
        return samples

    order = list(_batches(10, 3, None))
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="bad sample 7"):
        list(prefetched(order, list(range(10)), collate, pool))


def test_no_batches():
    with ThreadPoolExecutor(1) as pool:
        assert list(prefetched([], [], lambda s: s, pool)) == []
