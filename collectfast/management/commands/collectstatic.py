"""``collectstatic`` that lets a strategy decide which files to upload, and uploads them in a pool."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib.staticfiles.management.commands import collectstatic
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.core.management.base import CommandError, CommandParser

from collectfast import counting
from collectfast.conf import settings
from collectfast.pool import Outcome, WorkerPool
from collectfast.postprocess import staged_post_process
from collectfast.strategies import Strategy, guess_strategy, load_strategy

Task = tuple[str, str, Storage]


class _DrainBeforePostProcess:
    """The destination storage, but ``post_process`` first waits for every queued upload.

    Django's ``collect()`` starts post-processing straight after its finder loop;
    hashed files must not be written before the originals are in place. Where
    ``staged`` is given (see collectfast.postprocess), it runs instead, and drains itself.
    """

    def __init__(self, storage: Storage, drain: Callable[[], None], staged: Callable[..., Any] | None = None) -> None:
        self._storage = storage
        self._drain = drain
        self._staged = staged

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._storage, name)
        if name != "post_process":
            return attribute
        if self._staged is not None:
            return self._staged

        def post_process(*args: Any, **kwargs: Any) -> Any:
            self._drain()
            return attribute(*args, **kwargs)

        return post_process


class Command(collectstatic.Command):
    help = collectstatic.Command.help + " Uploads only changed files, in parallel (collectfast)."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.collectfast_enabled = False
        self.strategy: Strategy[Any] | None = None
        self.tasks: list[Task] = []
        self.requests = counting.RequestCounter()
        self.counting_requests = False
        self._drained = False
        self._destination: Storage = self.storage
        self._local = threading.local()
        self.pool = WorkerPool(threads=1)
        self.debug = False

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--disable-collectfast",
            action="store_true",
            dest="disable_collectfast",
            default=False,
            help="Run Django's stock collectstatic, without collectfast.",
        )

    def set_options(self, **options: Any) -> None:
        super().set_options(**options)
        self.tasks = []
        self._drained = False
        try:
            self.collectfast_enabled = settings.enabled and not options.get("disable_collectfast", False)
            self.pool = WorkerPool(settings.threads, retries=settings.retries)
            self.debug = settings.debug
            if self.collectfast_enabled:
                self.strategy = self.load_strategy()
                self.collectfast_enabled = self.strategy is not None
                if self.strategy is not None:
                    self.strategy.warning_handler = self.warn
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from error

    def load_strategy(self) -> Strategy[Any] | None:
        path = settings.strategy
        if path is None:
            path = guess_strategy(self.storage)
        if path is None:
            storage_class = self.storage.__class__
            self.stderr.write(
                f"collectfast: no built-in strategy fits {storage_class.__module__}.{storage_class.__qualname__}, "
                "so Django's stock collectstatic runs. Set COLLECTFAST_STRATEGY to a "
                "collectfast.strategies.Strategy subclass written for this storage."
            )
            return None
        strategy_class = load_strategy(path)
        if not strategy_class.fits(self.storage):
            raise CommandError(
                f"COLLECTFAST_STRATEGY {path!r} does not work with the configured storage "
                f"{self.storage.__class__.__qualname__}. Pick the strategy for that storage, or unset "
                "COLLECTFAST_STRATEGY to let collectfast choose."
            )
        return strategy_class(self.storage)

    def warn(self, message: str) -> None:
        """A problem the deploy survives, on stderr at every verbosity."""
        self.stderr.write(f"collectfast: {message}", self.style.WARNING)

    def collect(self) -> dict[str, list[str]]:
        if not self.collectfast_enabled:
            return super().collect()
        assert self.strategy is not None
        counting.activate(self.requests)
        self.counting_requests = counting.instrument_storage(self.storage)
        self._destination = self.storage
        self.storage = _DrainBeforePostProcess(self.storage, self.drain, staged_post_process(self, self.storage))
        succeeded = False
        try:
            collected: dict[str, list[str]] = super().collect()
            self.drain()
            succeeded = True
        finally:
            self.storage = self._destination
            try:
                self.pool.close()
                self.strategy.finish(succeeded=succeeded, dry_run=self.dry_run)
            finally:
                counting.activate(None)
        collected["modified"] = self.copied_files + self.symlinked_files
        return collected

    def handle(self, **options: Any) -> str | None:
        summary: str | None = super().handle(**options)
        if summary and self.collectfast_enabled:
            extra = self.strategy.requests_summary() if self.strategy else None
            if self.counting_requests:
                summary += " " + self.requests.summary()
            if extra:
                summary += " " + extra
        return summary

    def clear_dir(self, path: str) -> None:
        deleted = (
            self.strategy.clear_remote(dry_run=self.dry_run) if self.collectfast_enabled and self.strategy else None
        )
        if deleted is None:
            return super().clear_dir(path)
        verb = "Pretending to delete" if self.dry_run else "Deleting"
        # Django 6.0 started recording deletions and moved their messages to level 2.
        recorded = getattr(self, "deleted_files", None)
        for name in deleted:
            self.log(f"{verb} '{name}'", level=1 if recorded is None else 2)
        if recorded is not None:
            recorded.extend(deleted)
        return None

    def copy_file(self, path: str, prefixed_path: str, source_storage: Storage) -> None:
        if not self.collectfast_enabled:
            return super().copy_file(path, prefixed_path, source_storage)
        # Decided and uploaded together once the finder loop is over: see drain().
        self.tasks.append((path, prefixed_path, source_storage))
        return None

    def drain(
        self,
        later_paths: Sequence[str] = (),
        after: str = "The other files were uploaded and post-processing did not run.",
    ) -> None:
        """Decide and upload every queued file; raise naming each file that failed.

        ``later_paths`` are decided in later batches (post-processed files): the strategy learns them now.
        """
        if self._drained:
            return
        self._drained = True
        assert self.strategy is not None
        paths = [task[1] for task in self.tasks]
        self.strategy.start([*paths, *later_paths], dry_run=self.dry_run, cleared=self.clear)
        tasks, self.tasks = self.tasks, []
        self.run_batch(tasks, self.process_task, self.record, after=after)

    def run_batch(
        self, tasks: list[Task], work: Callable[[Task], bool], record: Callable[..., None], *, after: str
    ) -> None:
        """Run ``work`` on every task in the pool, ``record(task, copied=...)`` each success on this thread.

        Raises CommandError naming every failure once the batch is over; ``after`` says what that left.
        """
        failures: list[Outcome[Task, bool]] = []
        for outcome in self.pool.run(tasks, work):
            if outcome.error is not None:
                failures.append(outcome)
            else:
                record(outcome.task, copied=bool(outcome.result))
        if failures:
            raise CommandError(self.describe_failures(failures, total=len(tasks), after=after))

    def process_task(self, task: Task) -> bool:
        """Runs in a worker: decide, then upload with this thread's own storage client."""
        path, prefixed_path, source_storage = task
        assert self.strategy is not None
        self.strategy.pre_should_copy_hook()
        if not self.strategy.should_copy_file(path, prefixed_path, source_storage):
            return False
        if not self.dry_run:
            self.strategy.copy_file(path, prefixed_path, source_storage, self.worker_storage())
        return True

    def worker_storage(self) -> Storage:
        # boto3 resources and sessions are not thread-safe: each thread gets its own copy.
        storage: Storage | None = getattr(self._local, "storage", None)
        if storage is None:
            assert self.strategy is not None
            storage = self.strategy.worker_storage(self._destination)
            counting.instrument_storage(storage)
            self._local.storage = storage
        return storage

    def record(self, task: Task, *, copied: bool) -> None:
        path, prefixed_path, source_storage = task
        assert self.strategy is not None
        if not copied:
            self.unmodified_files.append(prefixed_path)
            self.log(f"Skipping '{path}' (not modified)", level=2)
            self.strategy.on_skip_hook(path, prefixed_path, source_storage)
            return
        self.copied_files.append(prefixed_path)
        if self.dry_run:
            self.log(f"Pretending to copy '{self.source_path(path, source_storage)}'", level=1)
        else:
            self.log(f"Copying '{self.source_path(path, source_storage)}'", level=2)
            self.strategy.post_copy_hook(path, prefixed_path, source_storage)

    @staticmethod
    def source_path(path: str, source_storage: Storage) -> str:
        try:
            return source_storage.path(path)
        except NotImplementedError:
            return path

    def describe_failures(self, failures: list[Outcome[Task, bool]], total: int, after: str) -> str:
        lines = [f"collectfast could not upload {len(failures)} of {total} files:"]
        for outcome in sorted(failures, key=lambda o: o.task[1]):
            error = outcome.error
            assert error is not None
            lines.append(f"  {outcome.task[1]}: {type(error).__name__}: {error}")
            if self.debug:
                lines.extend("    " + line for line in "".join(traceback.format_exception(error)).splitlines())
        lines.append(
            f"{after} Fix the cause and run collectstatic again; files already in place are skipped."
            + ("" if self.debug else " Set COLLECTFAST_DEBUG = True for tracebacks.")
        )
        return "\n".join(lines)
