"""Run per-file work in a bounded pool of threads, retrying transient remote errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from collectfast.errors import is_transient

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Outcome(Generic[T, R]):
    task: T
    result: R | None = None
    error: Exception | None = None


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
    ) -> None:
        self.threads = threads
        self.retries = retries
        self.backoff = backoff
        self.transient = transient
        self.stopped = False
        self._executor: ThreadPoolExecutor | None = None

    def attempt(self, work: Callable[[T], R], task: T) -> Outcome[T, R]:
        for attempt in range(self.retries + 1):
            try:
                return Outcome(task, result=work(task))
            except Exception as error:
                if attempt == self.retries or self.stopped or not self.transient(error):
                    return Outcome(task, error=error)
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Start no more tasks in the current batch; those already running still report."""
        self.stopped = True

    def close(self) -> None:
        """Wait for the threads to finish their current task and stop them."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def run(self, tasks: Iterable[T], work: Callable[[T], R]) -> Iterator[Outcome[T, R]]:
        """Yield the outcome of every task started; after :meth:`stop`, tasks not started are left out."""
        self.stopped = False
        if self.threads <= 1:
            for task in tasks:
                if self.stopped:
                    return
                yield self.attempt(work, task)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="collectfast")
        executor = self._executor
        window = self.threads * 4
        pending: set[Future[Outcome[T, R]]] = set()
        try:
            for task in tasks:
                if len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
                if self.stopped:
                    break
                pending.add(executor.submit(self.attempt, work, task))
            while pending:
                if self.stopped:
                    pending = {future for future in pending if not future.cancel()}
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        except GeneratorExit:
            for future in pending:
                future.cancel()
            raise
        except BaseException:
            # Interrupted (Ctrl-C): start nothing new, but report what finished.
            for future in pending:
                future.cancel()
            self.close()
            yield from (f.result() for f in pending if f.done() and not f.cancelled())
            raise
