"""Run per-file work in a bounded pool of threads, retrying transient remote errors."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, wait
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from collectfast.errors import is_transient

T = TypeVar("T")
R = TypeVar("R")

#: Seconds an interrupted run waits for the uploads in flight before it gives up on them.
INTERRUPT_GRACE = 3.0


@dataclass
class Outcome(Generic[T, R]):
    task: T
    result: R | None = None
    error: Exception | None = None


class _Threads:
    """A minimal executor on daemon threads.

    ThreadPoolExecutor's threads are joined when the interpreter exits, so one
    request hung in a worker would keep an interrupted deploy alive for minutes.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._max = threads
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], R]) -> Future[R]:
        future: Future[R] = Future()
        with self._lock:
            self._busy += 1
            if self._busy > len(self._threads) and len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put((future, fn))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as error:
                    future.set_exception(error)
            with self._lock:
                self._busy -= 1

    def shutdown(self, timeout: float | None) -> None:
        """Cancel what has not started; wait up to ``timeout`` (None: as long as it takes) for the rest."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
                with self._lock:
                    self._busy -= 1
        for _ in self._threads:
            self._queue.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


class WorkerPool:
    """``threads`` <= 1 runs the work inline; more runs it on that many threads.

    At most ``threads * 4`` tasks are in flight, so memory does not grow with
    the number of files, and results come back to the caller's thread. The
    threads live until :meth:`close`, so batches of one run share them (and
    whatever each thread keeps, such as its own storage client).
    """

    def __init__(
        self,
        threads: int,
        retries: int = 2,
        backoff: float = 0.5,
        transient: Callable[[BaseException], bool] = is_transient,
        on_interrupt: Callable[[int], None] | None = None,
        grace: float = INTERRUPT_GRACE,
    ) -> None:
        self.threads = threads
        self.retries = retries
        self.backoff = backoff
        self.transient = transient
        self.on_interrupt = on_interrupt
        self.grace = grace
        self.stopped = False
        self._executor: _Threads | None = None

    def attempt(self, work: Callable[[T], R], task: T) -> Outcome[T, R]:
        for attempt in range(self.retries + 1):
            try:
                return Outcome(task, result=work(task))
            except Exception as error:
                if attempt == self.retries or self.stopped or not self.transient(error):
                    return Outcome(task, error=error)
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _known(known: Callable[[T], R | None] | None, task: T) -> Outcome[T, R] | None:
        try:
            result = None if known is None else known(task)
        except Exception:  # noqa: BLE001 - the work itself reports what is wrong
            return None
        return None if result is None else Outcome(task, result=result)

    def stop(self) -> None:
        """Start no more tasks in the current batch; those already running still report."""
        self.stopped = True

    def close(self, timeout: float | None = None) -> None:
        """Stop the threads once their current task is done, waiting at most ``timeout`` seconds for it."""
        if self._executor is not None:
            self._executor.shutdown(timeout)
            self._executor = None

    def run(
        self, tasks: Iterable[T], work: Callable[[T], R], known: Callable[[T], R | None] | None = None
    ) -> Iterator[Outcome[T, R]]:
        """Yield the outcome of every task started; after :meth:`stop`, tasks not started are left out.

        ``known(task)``: the task's result when it is known at once, on the caller's thread (None: work it out).
        A handoff to a thread and back costs more than such a lookup.
        """
        self.stopped = False
        if self.threads <= 1:
            for task in tasks:
                if self.stopped:
                    return
                yield self._known(known, task) or self.attempt(work, task)
            return
        if self._executor is None:
            self._executor = _Threads(self.threads, "collectfast")
        executor = self._executor
        window = self.threads * 4
        pending: set[Future[Outcome[T, R]]] = set()
        # Futures report to a queue as they end: wait() would visit every pending future per result.
        ended: queue.SimpleQueue[Future[Outcome[T, R]]] = queue.SimpleQueue()

        def collect() -> Iterator[Outcome[T, R]]:
            future = ended.get()
            pending.discard(future)
            if not future.cancelled():
                yield future.result()

        try:
            for task in tasks:
                if self.stopped:
                    break
                outcome = self._known(known, task)
                if outcome is not None:
                    yield outcome
                    continue
                while len(pending) >= window:
                    yield from collect()
                if self.stopped:
                    break
                future = executor.submit(partial(self.attempt, work, task))
                pending.add(future)
                future.add_done_callback(ended.put)
            while pending:
                if self.stopped:
                    for future in list(pending):
                        future.cancel()
                yield from collect()
        except GeneratorExit:
            for future in pending:
                future.cancel()
            raise
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): start nothing new, give what runs a few seconds, report what finished.
            self.stopped = True
            running = {future for future in pending if not future.cancel()}
            if running and self.on_interrupt is not None:
                self.on_interrupt(len(running))
            with suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
                wait(running, timeout=self.grace)
            self.close(timeout=0)
            yield from (f.result() for f in running if f.done())
            raise
