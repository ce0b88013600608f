"""One collectstatic run: the queued files, the pool that decides and uploads them, failures and counts.

The management command is an adapter from Django's ``collectstatic`` hooks to a
:class:`Deploy`; post-processing (collectfast.postprocess) works on it too.
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.storage import Storage
from django.core.management.base import CommandError

from collectfast import arenas, counting, errors
from collectfast.backends import backend_class_for
from collectfast.cdn import Invalidation
from collectfast.checks import cache_capacity_warning
from collectfast.pool import Outcome, WorkerPool
from collectfast.progress import Progress
from collectfast.strategies import Strategy, guess_strategy

#: ``(path, prefixed_path, source storage)``, as collectstatic hands each found file over.
Task = tuple[str, str, Storage]
#: A task as the pool holds it: its number in the batch, the task, and its decision if made already (decide_here).
Item = tuple[int, Task, bool | None]
Log = Callable[[str, int], None]
Warn = Callable[[str], None]

#: Failures named one by one before the rest are only counted.
NAMED_FAILURES = 10
#: Files hashed at most while the listing is under way (Deploy.look_up): about 2.5 MB of checksums.
PREFETCH_LIMIT = 10_000


@dataclass
class Failure:
    task: Task
    error: Exception
    diagnosis: errors.Diagnosis


@dataclass
class Tally:
    """Files of this run so far, by what became of them."""

    queued: int = 0
    uploaded: int = 0
    unchanged: int = 0
    failed: int = 0

    def closing_sentence(self, *, dry_run: bool) -> str:
        """What was and was not uploaded, in one sentence: the last of any failure report."""
        not_tried = self.queued - self.uploaded - self.unchanged - self.failed
        rest = f"{self.unchanged} already in place, {self.failed} failed, {not_tried} not tried."
        if dry_run:
            return f"Dry run, nothing was uploaded: of {self.queued} files {self.uploaded} would have been, {rest}"
        if not self.uploaded:
            return f"No file was uploaded: of {self.queued} files {rest}"
        return f"Uploaded {self.uploaded} of {self.queued} files; {rest}"


@dataclass
class Deploy:
    """Decide and upload a run's files through ``strategy``, in a pool; report failures once, truthfully."""

    strategy: Strategy[Any]
    storage: Storage
    log: Log
    warn: Warn
    dry_run: bool = False
    cleared: bool = False
    threads: int = 1
    retries: int = 2
    debug: bool = False
    #: Destination paths uploaded and found unchanged, in the finder's order (the command's own lists).
    copied: list[str] = field(default_factory=list)
    unmodified: list[str] = field(default_factory=list)
    progress: Progress = field(default_factory=lambda: Progress(lambda text: None, enabled=False, terminal=False))

    def __post_init__(self) -> None:
        _load_backend(self.storage)
        self.tasks: list[Task] = []
        self.tally = Tally()
        self.found = 0
        self.pruned = 0
        #: Names a manifest storage hashed in this run, and post-processed files uploaded (collectfast.postprocess).
        self.hashed_names: set[str] = set()
        self.uploaded_later: list[str] = []
        #: The CDN invalidation after the run (collectfast.cdn), if one was configured and tried.
        self.invalidation: Invalidation | None = None
        self.bytes_uploaded = 0
        self.failures: list[Failure] = []
        #: Wall seconds per phase of the run; seconds summed over the threads deciding, and the workers uploading.
        self.timings: dict[str, float] = {}
        self.worker_seconds: dict[str, float] = {"decide": 0.0, "upload": 0.0}
        self._started = time.monotonic()
        self._worker_lock = threading.Lock()
        self.requests = counting.RequestCounter()
        self.counting_requests = False
        self.pool = WorkerPool(
            self.threads, retries=self.retries, transient=self.is_transient, on_interrupt=self.announce_stop
        )
        self._local = threading.local()
        self._drained = False

    def learn_hashed_names(self, names: set[str]) -> None:
        """Post-processing's hashed names, before any of the run's files is decided (per-path parameters)."""
        self.hashed_names.update(names)
        learn = getattr(self.strategy, "learn_hashed_names", None)
        if callable(learn):
            learn(names)

    def announce_stop(self, in_flight: int) -> None:
        self.warn(f"Stopping: waiting for {in_flight} {plural(in_flight, 'upload')} in flight (Ctrl-C again to abort).")

    def is_transient(self, error: BaseException) -> bool:
        return errors.diagnose(error, self.storage).transient

    def begin(self) -> None:
        arenas.limit()  # before the run starts any thread
        counting.activate(self.requests)
        # Backends count their own clients' requests (counting.record); boto3 clients of other storages are hooked.
        has_backend = backend_class_for(self.storage) is not None
        self.counting_requests = counting.instrument_storage(self.storage) or has_backend
        self._started = time.monotonic()
        self.progress.begin("finding files")

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - started

    def queue(self, path: str, prefixed_path: str, source_storage: Storage) -> None:
        # Interned: the manifest's names (collectfast.manifest) then reuse these strings instead of holding copies.
        self.tasks.append((path, sys.intern(prefixed_path), source_storage))

    def drain(self, later_paths: Sequence[str] = (), after: str = "Post-processing did not run.") -> None:
        """Decide and upload every queued file; raise naming what failed.

        ``later_paths`` are decided in later batches (post-processed files): the strategy learns them now.
        """
        if self._drained:
            return
        self._drained = True
        self.timings["find"] = self.timings.get("find", 0.0) + time.monotonic() - self._started
        self.found = len(self.tasks)
        paths = [task[1] for task in self.tasks]
        paths.extend(later_paths)
        capacity = cache_capacity_warning(type(self.strategy), len(paths))
        if capacity:
            self.warn(capacity)
        self.progress.begin("looking up remote files", total=len(paths))
        with self.phase("look_up"):
            self.look_up(paths)
        del paths
        tasks, self.tasks = self.tasks, []
        self.run_batch(tasks, self.process_task, self.record, after=after, decide=self.decide_here)

    def look_up(self, paths: list[str]) -> None:
        """``strategy.start(paths)``; meanwhile a strategy with ``prefetch`` hashes the queued local files.

        The listing runs on a thread of its own and the hashing on this one: threads that take turns
        hashing small files spend more on handing the GIL over than on hashing. Whatever is hashed before
        the listing is in is not hashed again when decided. An error of ``start`` is raised here, before any upload.
        """
        prefetch = getattr(self.strategy, "prefetch", None)
        if not callable(prefetch) or self.threads <= 1 or self.cleared:
            self.strategy.start(paths, dry_run=self.dry_run, cleared=self.cleared)
            return
        failed: list[BaseException] = []
        done = threading.Event()

        def start() -> None:
            try:
                self.strategy.start(paths, dry_run=self.dry_run, cleared=self.cleared)
            except BaseException as error:  # noqa: BLE001 - raised on the main thread below
                failed.append(error)
            finally:
                done.set()

        threading.Thread(target=start, name="collectfast_look_up", daemon=True).start()
        # Each prefetched checksum is held until its file is decided: a cap keeps that bounded at any N.
        for task in itertools.islice(self.tasks, PREFETCH_LIMIT):
            if done.is_set():
                break
            with suppress(Exception):  # a file that fails here is read again when decided, which reports it
                prefetch(*task)
        done.wait()
        if failed:
            raise failed[0]

    def run_batch(
        self,
        tasks: list[Task],
        work: Callable[[Task], bool],
        record: Callable[..., None],
        *,
        after: str,
        decide: Callable[[Task], bool | None] | None = None,
    ) -> None:
        """Run ``work`` on every task in the pool; ``record(task, copied=...)`` each success, in the tasks' order.

        Consumes ``tasks``: each leaves the list as the pool takes it, and is freed once settled.

        ``decide(task)``, on this thread: False when the file is unchanged, True when it is to be uploaded
        (the pool then only uploads it, :meth:`upload_task`), None to leave the decision to ``work`` in the pool.
        Stops early once failures show a cause that concerns every file. Raises
        CommandError naming the failures; ``after`` says what that leaves undone.
        """
        self.tally.queued += len(tasks)
        self.progress.begin("uploading")
        try:
            with self.phase("upload"):
                self._run_batch(tasks, work, record, after=after, decide=decide)
        finally:
            self.progress.show(force=True)

    def _run_batch(
        self,
        tasks: list[Task],
        work: Callable[[Task], bool],
        record: Callable[..., None],
        *,
        after: str,
        decide: Callable[[Task], bool | None] | None,
    ) -> None:
        failures: list[Failure] = []
        stop: Failure | None = None
        shared: dict[str, int] = {}
        finished: dict[int, Outcome[Item, bool]] = {}
        following = 0

        def decided(task: Task) -> bool | None:
            if decide is None:
                return None
            try:
                return decide(task)
            except Exception:  # noqa: BLE001 - decided again by work in the pool, which reports what is wrong
                return None

        def run(item: Item) -> bool:
            return self.upload_task(item[1]) if item[2] else work(item[1])

        # Numbered as the pool takes them: a list of numbered tasks would hold every file twice more.
        items = ((index, task, decided(task)) for index, task in enumerate(taken(tasks)))
        for outcome in self.pool.run(items, run, known=lambda item: False if item[2] is False else None):
            finished[outcome.task[0]] = outcome
            if outcome.error is not None:
                failure = self._failure(outcome.task[1], outcome.error)
                failures.append(failure)
                cause = failure.diagnosis.shared_cause
                if cause is not None and stop is None:
                    shared[cause] = shared.get(cause, 0) + 1
                    if shared[cause] >= failure.diagnosis.stop_after:
                        stop = failure
                        self.pool.stop()
            # Successes are recorded (and logged) in the tasks' order, as stock logs them.
            while following in finished:
                self._settle(finished.pop(following), record)
                following += 1
        for index in sorted(finished):
            self._settle(finished[index], record)
        if stop is not None and isinstance(stop.error, ImproperlyConfigured):
            raise stop.error  # as stock raises it: the same exception, the same words
        if failures:
            raise CommandError(self.describe_failures(failures, stop, after=after))

    def _failure(self, task: Task, error: Exception) -> Failure:
        self.tally.failed += 1
        self.progress.add(failed=1)
        failure = Failure(task, error, errors.diagnose(error, self.storage))
        self.failures.append(failure)
        return failure

    def _settle(self, outcome: Outcome[Item, bool], record: Callable[..., None]) -> None:
        if outcome.error is not None:
            return
        copied = bool(outcome.result)
        if copied:
            self.tally.uploaded += 1
        else:
            self.tally.unchanged += 1
        self.progress.bytes_sent = self.bytes_uploaded
        self.progress.add(uploaded=int(copied), skipped=int(not copied))
        record(outcome.task[1], copied=copied)

    def decide_here(self, task: Task) -> bool | None:
        """Decide a file on the calling thread where that needs no request: True to upload it, False to skip it.

        None leaves it to :meth:`process_task` in a worker: a strategy whose decisions may make
        requests (``decides_locally`` False) decides there, the requests of many files in flight at once.
        """
        if self.cleared:
            return True  # the location is empty (or, in a dry run, pretends to be): every file goes up
        strategy = self.strategy
        unchanged_now = getattr(strategy, "unchanged_now", None)
        if callable(unchanged_now) and unchanged_now(*task):
            return False
        if not strategy.decides_locally:
            return None
        started = time.monotonic()
        try:
            strategy.pre_should_copy_hook()
            return strategy.should_copy_file(*task)
        finally:
            self._add_worker_time("decide", started)

    def process_task(self, task: Task) -> bool:
        """Runs in a worker: decide, then upload with this thread's own storage client."""
        path, prefixed_path, source_storage = task
        if not self.cleared:
            started = time.monotonic()
            try:
                self.strategy.pre_should_copy_hook()
                if not self.strategy.should_copy_file(path, prefixed_path, source_storage):
                    return False
            finally:
                self._add_worker_time("decide", started)
        # After --clear the location is empty (or, in a dry run, pretends to be): every file goes up.
        if not self.dry_run:
            self.upload(path, prefixed_path, source_storage)
        return True

    def upload_task(self, task: Task) -> bool:
        """Runs in a worker: upload a file already decided (in a dry run, only count it)."""
        if not self.dry_run:
            self.upload(*task)
        return True

    def upload(self, path: str, prefixed_path: str, source_storage: Storage) -> None:
        # Storage.save() refuses such names; the strategies' in-place writes bypass it, so refuse them here.
        validate_name(prefixed_path)
        started = time.monotonic()
        try:
            self.strategy.forget(prefixed_path)
            self.strategy.copy_file(path, prefixed_path, source_storage, self.worker_storage())
        finally:
            self._add_worker_time("upload", started)
        sent = source_storage.size(path)
        with self._worker_lock:
            self.bytes_uploaded += sent

    def _add_worker_time(self, name: str, started: float) -> None:
        with self._worker_lock:
            self.worker_seconds[name] += time.monotonic() - started

    def worker_storage(self) -> Storage:
        # boto3 resources and sessions are not thread-safe: each thread gets its own copy.
        storage: Storage | None = getattr(self._local, "storage", None)
        if storage is None:
            storage = self.strategy.worker_storage(self.storage)
            counting.instrument_storage(storage)
            self._local.storage = storage
        return storage

    def record(self, task: Task, *, copied: bool) -> None:
        path, prefixed_path, source_storage = task
        if not copied:
            self.unmodified.append(prefixed_path)
            self.log(f"Skipping '{path}' (not modified)", 2)
            self.strategy.on_skip_hook(path, prefixed_path, source_storage)
            return
        self.copied.append(prefixed_path)
        if self.dry_run:
            self.log(f"Pretending to copy '{source_path(path, source_storage)}'", 1)
        else:
            self.log(f"Copying '{source_path(path, source_storage)}'", 2)
            self.strategy.post_copy_hook(path, prefixed_path, source_storage)

    def describe_failures(self, failures: list[Failure], stop: Failure | None, *, after: str) -> str:
        lines: list[str] = []
        named = failures
        if stop is not None:
            same = [f for f in failures if f.diagnosis.shared_cause == stop.diagnosis.shared_cause]
            lines.append(f"collectfast stopped: {stop.diagnosis.explanation or describe_error(stop.error)}")
            lines.append(f"  {len(same)} {plural(len(same), 'file')} failed this way: {names(same)}")
            named = [f for f in failures if f.diagnosis.shared_cause != stop.diagnosis.shared_cause]
            if named:
                lines.append(f"  and {len(named)} failed otherwise:")
        else:
            lines.append(f"collectfast could not upload {len(failures)} of {self.tally.queued} files:")
        for failure in sorted(named, key=lambda f: f.task[1])[:NAMED_FAILURES]:
            lines.append(f"  {failure.task[1]}: {describe_error(failure.error)}")
            if self.debug:
                trace = "".join(traceback.format_exception(failure.error))
                lines.extend("    " + line for line in trace.splitlines())
        if len(named) > NAMED_FAILURES:
            lines.append(f"  ... and {len(named) - NAMED_FAILURES} more.")
        hint = "" if self.debug else " Set COLLECTFAST_DEBUG = True for tracebacks."
        lines.append(f"{after} Fix the cause and run collectstatic again; files already in place are skipped.{hint}")
        lines.append(self.tally.closing_sentence(dry_run=self.dry_run))
        return "\n".join(lines)

    def finish(self, *, succeeded: bool, failure: BaseException | None = None) -> None:
        """Stop the pool and let the strategy save what it keeps; never hide ``failure``, the run's own error."""
        self.progress.end()
        try:
            # After a failure, a request hung in a worker must not hold the run: its upload stays unconfirmed.
            self.pool.close(timeout=None if failure is None else self.pool.grace)
            with self.phase("finish"):
                self.strategy.finish(succeeded=succeeded, dry_run=self.dry_run)
        except Exception as error:
            if failure is None:
                raise
            # Both are reported: the run's own failure stays the one raised.
            if isinstance(failure, CommandError):
                failure.args = (f"{failure}\nThen, while finishing: {describe_error(error)}",)
            else:
                self.warn(f"While finishing after the failure: {describe_error(error)}")
        finally:
            counting.activate(None)

    def summary(self) -> str:
        parts = [self.requests.summary()] if self.counting_requests else []
        extra = self.strategy.requests_summary()
        return " ".join([*parts, *([extra] if extra else [])])


def _load_backend(storage: Storage) -> None:
    """Import the built-in strategy module of the storage's family, so its error classifier is registered."""
    path = guess_strategy(storage)
    if path is not None:
        importlib.import_module(path.rpartition(".")[0])


def taken(tasks: list[Task]) -> Iterator[Task]:
    """The tasks in order, each removed from the list as it is yielded: a task is held until it is
    settled, not to the end of the batch, where the run's memory peaks."""
    tasks.reverse()
    while tasks:
        yield tasks.pop()


def validate_name(name: str) -> None:
    """Refuse what ``validate_file_name(name, allow_relative_path=True)`` refuses, in its words, without pathlib.

    pathlib interns every part of every name it parses: at 100,000 uploads the interpreter's
    table of interned strings grows by megabytes that stay for the whole run.
    """
    if os.path.basename(name) in {"", ".", ".."}:
        raise SuspiciousFileOperation(f"Could not derive file name from '{name}'")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or ".." in posix.split("/"):
        raise SuspiciousFileOperation(f"Detected path traversal attempt in '{name}'")


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def names(failures: list[Failure]) -> str:
    shown = ", ".join(f.task[1] for f in failures[:3])
    return shown + (f" and {len(failures) - 3} more" if len(failures) > 3 else "")


def plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


def source_path(path: str, source_storage: Storage) -> str:
    try:
        return source_storage.path(path)
    except NotImplementedError:
        return path
