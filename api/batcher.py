"""Dynamic batching: concurrent requests for one model gathered into one call, each answered alone.

A `Batcher` owns one thread. `submit(item)` (from the event loop) queues the item and awaits its own
result; the thread takes the first waiting item, gathers more of the same group (`key`) until `max_items`
or `max_wait` seconds after the first, calls `run(items)` once and hands each caller its result. This is
what TorchServe's `batch_size` / `max_batch_delay` and Triton's dynamic batcher do, in-process.

- A full queue refuses at once (`Overloaded`: the route answers 503 with Retry-After) instead of growing.
- A batch whose call fails is run again item by item, so one bad item fails only its own request.
- A caller that went away (its future cancelled) is skipped and never poisons its batch-mates.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Overloaded(RuntimeError):
    """The batcher's queue is full: try again later."""


@dataclass
class _Pending(Generic[Item]):
    item: Item
    key: Hashable
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What a batcher did, for /metrics: the sizes of the batches it ran and how long they took."""

    batches: int = 0
    items: int = 0
    sizes: list[int] = field(default_factory=list)  # the last batches' sizes (bounded)
    on_batch: Callable[[int, float, float], None] | None = None  # (size, seconds waited, seconds run)


class Batcher(Generic[Item, Result]):
    def __init__(self, run: Callable[[list[Item]], Sequence[Result]], *, max_items: int, max_wait: float,
                 max_queue: int, name: str = "batcher", stats: BatchStats | None = None,
                 cost: Callable[[Item], int] | None = None, max_cost: int | None = None) -> None:
        """`cost(item)` and `max_cost` bound a batch's work besides its item count (e.g. texts x beams of a
        search): a batch takes items while their total cost stays within `max_cost` (its first item always)."""
        if max_items < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_items and max_queue must be >= 1 and max_wait >= 0")
        self.run, self.max_items, self.max_wait, self.max_queue = run, max_items, max_wait, max_queue
        self.cost, self.max_cost = cost, max_cost
        self.stats = stats or BatchStats()
        self._queue: queue.Queue[_Pending[Item] | None] = queue.Queue()
        self._held: list[_Pending[Item]] = []  # taken from the queue but of another group than the batch
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Items waiting to be run."""
        return self._queue.qsize() + len(self._held)

    def submit_future(self, item: Item, key: Hashable = None) -> Future:
        """Queue `item` (its group: `key`); a Future of its result. Overloaded when the queue is full."""
        if self.depth >= self.max_queue:
            raise Overloaded(f"{self.depth} requests are waiting for the model; try again shortly")
        pending = _Pending(item, key)
        self._queue.put(pending)
        return pending.future

    async def submit(self, item: Item, key: Hashable = None) -> Result:
        """`item`'s result, computed in a batch with whatever else is waiting (awaitable from a route)."""
        future = self.submit_future(item, key)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()  # the client went away: its item is skipped if not yet running
            raise

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread once the items already queued have run."""
        self._closed.set()
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the batching thread -------------------------------------------------------------------

    def _next(self, timeout: float | None) -> _Pending[Item] | None:
        """The next item (held ones first), waiting at most `timeout` (None: for ever); None when none came
        or the batcher is closing (the close marker is put back for the loop to see)."""
        if self._held:
            return self._held.pop(0)
        try:
            found = self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if found is None:
            self._queue.put(None)
        return found

    def _gather(self, first: _Pending[Item]) -> list[_Pending[Item]]:
        batch, other = [first], []
        total = self.cost(first.item) if self.cost is not None else 0
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_items:
            candidate = self._next(deadline - time.monotonic())
            if candidate is None:
                break
            if candidate.key != first.key:
                other.append(candidate)  # another group: the next batch starts with it
                continue
            if self.cost is not None and self.max_cost is not None:
                total += self.cost(candidate.item)
                if total > self.max_cost:  # full: it starts the next batch
                    other.append(candidate)
                    break
            batch.append(candidate)
        self._held = other + self._held
        return batch

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            if first is None:  # close(): everything queued before it has run
                return
            batch = [p for p in self._gather(first) if p.future.set_running_or_notify_cancel()]
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Pending[Item]]) -> None:
        started = time.monotonic()
        waited = started - min(p.queued_at for p in batch)
        try:
            results = list(self.run([p.item for p in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"the batch function gave {len(results)} results for {len(batch)} items")
            for pending, result in zip(batch, results, strict=True):
                pending.future.set_result(result)
        except Exception:  # noqa: BLE001 - find the bad item: each one alone
            for pending in batch:
                try:
                    pending.future.set_result(self.run([pending.item])[0])
                except Exception as exc:  # noqa: BLE001 - that item's own error, to its own caller
                    pending.future.set_exception(exc)
        seconds = time.monotonic() - started
        self.stats.batches += 1
        self.stats.items += len(batch)
        self.stats.sizes = (self.stats.sizes + [len(batch)])[-1000:]
        if self.stats.on_batch is not None:
            self.stats.on_batch(len(batch), waited, seconds)

