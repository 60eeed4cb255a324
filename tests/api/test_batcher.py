"""The dynamic batcher: batches form under concurrency, results go to their own callers in order, a bad
item fails alone, a caller that left is skipped, a full queue refuses at once."""

from __future__ import annotations

import asyncio
import threading

import pytest

from api.batcher import Batcher, Overloaded

WAIT = 10.0


class Gate:
    """A batch function that records its batches; the first call waits until released."""

    def __init__(self, fn=lambda items: [x * 10 for x in items]) -> None:
        self.fn, self.batches = fn, []
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(WAIT)
        return self.fn(items)


def _wait(predicate) -> None:
    for _ in range(int(WAIT / 0.01)):
        if predicate():
            return
        threading.Event().wait(0.01)
    raise AssertionError("condition not reached in time")


def test_waiting_items_run_as_one_batch_each_getting_its_own_result_in_order() -> None:
    gate = Gate()
    batcher = Batcher(gate, max_items=8, max_wait=0.0, max_queue=100)
    try:
        first = batcher.submit_future(0)
        assert gate.entered.wait(WAIT)  # the first item runs alone, holding the thread
        futures = [batcher.submit_future(i) for i in range(1, 12)]
        gate.release.set()
        assert first.result(WAIT) == 0
        assert [f.result(WAIT) for f in futures] == [i * 10 for i in range(1, 12)]
        assert gate.batches == [[0], list(range(1, 9)), list(range(9, 12))]  # max_items = 8
        assert batcher.stats.sizes == [1, 8, 3] and batcher.stats.items == 12
    finally:
        batcher.close()


def test_a_batch_stops_where_its_cost_would_pass_the_bound() -> None:
    """Items of cost = their value, at most 10 per batch: [1 2 3 4] (10), [5] (5 + 6 > 10), [6], [7], and an
    item dearer than the bound runs alone rather than never."""
    gate = Gate()
    batcher = Batcher(gate, max_items=8, max_wait=0.0, max_queue=100, cost=lambda x: x, max_cost=10)
    try:
        batcher.submit_future(0)
        assert gate.entered.wait(WAIT)
        futures = [batcher.submit_future(i) for i in (1, 2, 3, 4, 5, 6, 7, 30, 1)]
        gate.release.set()
        assert [f.result(WAIT) for f in futures] == [i * 10 for i in (1, 2, 3, 4, 5, 6, 7, 30, 1)]
        assert gate.batches[1:] == [[1, 2, 3, 4], [5], [6], [7], [30], [1]]
    finally:
        batcher.close()


def test_groups_never_share_a_batch() -> None:
    gate = Gate()
    batcher = Batcher(gate, max_items=8, max_wait=0.0, max_queue=100)
    try:
        batcher.submit_future(0, key="a")
        assert gate.entered.wait(WAIT)
        futures = [batcher.submit_future(i, key="ab"[i % 2]) for i in range(1, 7)]
        gate.release.set()
        assert [f.result(WAIT) for f in futures] == [i * 10 for i in range(1, 7)]
        assert gate.batches[1:] == [[1, 3, 5], [2, 4, 6]]  # "b" items first come, grouped; then "a"
    finally:
        batcher.close()


def test_a_failing_item_fails_alone() -> None:
    def fn(items):
        if 13 in items:
            raise ValueError("bad item 13")
        return [x + 1 for x in items]

    gate = Gate(fn)
    batcher = Batcher(gate, max_items=8, max_wait=0.0, max_queue=100)
    try:
        batcher.submit_future(0)
        assert gate.entered.wait(WAIT)
        futures = {x: batcher.submit_future(x) for x in (11, 12, 13, 14)}
        gate.release.set()
        assert [futures[x].result(WAIT) for x in (11, 12, 14)] == [12, 13, 15]
        with pytest.raises(ValueError, match="bad item 13"):
            futures[13].result(WAIT)
    finally:
        batcher.close()


def test_a_caller_that_left_is_skipped_and_does_not_poison_the_batch() -> None:
    gate = Gate()
    batcher = Batcher(gate, max_items=8, max_wait=0.0, max_queue=100)
    try:
        batcher.submit_future(0)
        assert gate.entered.wait(WAIT)
        kept, gone, also = batcher.submit_future(1), batcher.submit_future(2), batcher.submit_future(3)
        assert gone.cancel()
        gate.release.set()
        assert (kept.result(WAIT), also.result(WAIT)) == (10, 30)
        assert gate.batches[1] == [1, 3]
    finally:
        batcher.close()


def test_a_full_queue_refuses_at_once() -> None:
    gate = Gate()
    batcher = Batcher(gate, max_items=2, max_wait=0.0, max_queue=3)
    try:
        batcher.submit_future(0)
        assert gate.entered.wait(WAIT)
        waiting = [batcher.submit_future(i) for i in (1, 2, 3)]
        with pytest.raises(Overloaded):
            batcher.submit_future(4)
        gate.release.set()
        assert [f.result(WAIT) for f in waiting] == [10, 20, 30]
        _wait(lambda: batcher.depth == 0)
        assert batcher.submit_future(5).result(WAIT) == 50  # room again
    finally:
        batcher.close()


def test_max_wait_gathers_items_that_arrive_soon_after_the_first() -> None:
    gate = Gate()
    gate.release.set()
    batcher = Batcher(gate, max_items=64, max_wait=0.5, max_queue=100)
    try:
        futures = [batcher.submit_future(i) for i in range(5)]
        assert [f.result(WAIT) for f in futures] == [0, 10, 20, 30, 40]
        assert gate.batches == [[0, 1, 2, 3, 4]]
    finally:
        batcher.close()


def test_submit_from_the_event_loop_and_cancellation() -> None:
    gate = Gate()
    batcher = Batcher(gate, max_items=8, max_wait=0.0, max_queue=100)

    async def main() -> list:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(gate.entered.wait, WAIT)
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0)  # let them queue
        tasks[1].cancel()
        gate.release.set()
        done = await asyncio.gather(first, *tasks, return_exceptions=True)
        return done

    try:
        first, one, two, three = asyncio.run(main())
        assert (first, one, three) == (0, 10, 30) and isinstance(two, asyncio.CancelledError)
    finally:
        batcher.close()


def test_a_searchs_cost_is_its_rows() -> None:
    from api.serving import _search_rows

    assert _search_rows((["a", "b"], (("beam_size", 5), ("decoding", "beam")))) == 10
    assert _search_rows((["a", "b", "c"], (("beam_size", 5), ("decoding", "greedy")))) == 3
