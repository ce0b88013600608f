"""``collectstatic`` that lets a strategy decide which files to upload, and uploads them in a pool.

An adapter from Django's command to a :class:`collectfast.deploy.Deploy`, which does the work.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.staticfiles.management.commands import collectstatic
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.core.management.base import CommandError, CommandParser

from collectfast import cdn, report
from collectfast.checks import invalidate_error
from collectfast.conf import settings
from collectfast.deploy import Deploy
from collectfast.postprocess import staged_post_process
from collectfast.progress import Progress
from collectfast.prune import Pruner, produced_by_deploy
from collectfast.strategies import DisabledStrategy, Strategy, guess_strategy, load_strategy
from collectfast.strategies.manifest_base import ManifestStrategy


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


@contextmanager
def _interruptible() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM (a CI job cancelled, a container stopped) stop the run: what finished is recorded.

    Yields the signals received. Python drops an exception raised while a finalizer runs (a generator
    closed by the garbage collector, say): the caller raises again if the run ended as if none came.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    # Only where Python's own behaviour applies: an ignored signal, or a handler of the host's, stays.
    ours = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    previous = {
        signum: signal.signal(signum, interrupt) for signum, usual in ours.items() if signal.getsignal(signum) is usual
    }
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Command(collectstatic.Command):
    help = collectstatic.Command.help + " Uploads only changed files, in parallel (collectfast)."
    #: ``--prune`` and ``--max-delete``; the summary of the pruning once done.
    prune = False
    max_delete: int | None = None
    pruned: str | None = None
    #: The CDN to invalidate after a successful deploy (COLLECTFAST_INVALIDATE).
    invalidator: cdn.Invalidator | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.collectfast_enabled = False
        self.strategy: Strategy[Any] | None = None
        self.deploy: Deploy | None = None
        self.read_cache = True
        self.report_path: str | None = None
        self.pool_options: dict[str, Any] = {}
        self._warn_lock = threading.Lock()

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--disable-collectfast",
            action="store_true",
            dest="disable_collectfast",
            default=False,
            help="Run Django's stock collectstatic, without collectfast.",
        )
        parser.add_argument(
            "--report",
            metavar="FILE",
            dest="report",
            default=None,
            help="Write a JSON account of the run to FILE (default: COLLECTFAST_REPORT).",
        )
        parser.add_argument(
            "--no-cache",
            action="store_false",
            dest="read_cache",
            default=True,
            help="Ignore remote checksums kept in COLLECTFAST_CACHE: look them up afresh, and cache them again.",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="After a successful deploy, delete the objects no recent deploy needs (see collectfast_prune).",
        )
        parser.add_argument(
            "--max-delete",
            type=int,
            default=None,
            metavar="N",
            help="With --prune: refuse to delete more than N objects (default: COLLECTFAST_PRUNE_MAX_DELETE).",
        )

    def set_options(self, **options: Any) -> None:
        super().set_options(**options)
        self.read_cache = options.get("read_cache", True)
        self.report_path = options.get("report")
        self.deploy = None
        self.invalidator = None
        try:
            self.collectfast_enabled = settings.enabled and not options.get("disable_collectfast", False)
            if self.collectfast_enabled:
                self.pool_options = {"threads": settings.threads, "retries": settings.retries, "debug": settings.debug}
                self.report_path = self.report_path or settings.report
                self.strategy = self.load_strategy(announce=bool(options.get("skip_checks", True)))
                self.collectfast_enabled = self.strategy is not None
            if self.collectfast_enabled:
                invalid = invalidate_error()
                if invalid:
                    raise CommandError(invalid)
                self.invalidator = cdn.from_settings(settings.invalidate, self.storage)
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from error

    def load_strategy(self, *, announce: bool = True) -> Strategy[Any] | None:
        """The configured strategy, or None for stock collectstatic.

        ``announce``: say so when no strategy fits; when the system checks ran, W001 already did.
        """
        path = settings.strategy
        if path is None:
            path = guess_strategy(self.storage)
        if path is None:
            if announce:
                storage_class = self.storage.__class__
                self.stderr.write(
                    f"collectfast: no built-in strategy fits {storage_class.__module__}.{storage_class.__qualname__}, "
                    "so Django's stock collectstatic runs. Set COLLECTFAST_STRATEGY to a "
                    "collectfast.strategies.Strategy subclass written for this storage."
                )
            return None
        strategy_class = load_strategy(path)
        if issubclass(strategy_class, DisabledStrategy):
            return None  # Collectfast 2.2.0's placeholder for "no strategy": stock collectstatic runs
        if not strategy_class.fits(self.storage):
            raise CommandError(
                f"COLLECTFAST_STRATEGY {path!r} does not work with the configured storage "
                f"{self.storage.__class__.__qualname__}. Pick the strategy for that storage, or unset "
                "COLLECTFAST_STRATEGY to let collectfast choose."
            )
        strategy = strategy_class(self.storage)
        strategy.warning_handler = self.warn
        if hasattr(strategy, "read_cache"):
            strategy.read_cache = self.read_cache
        return strategy

    def warn(self, message: str) -> None:
        """A problem the deploy survives, on stderr at every verbosity; worker threads may call it."""
        with self._warn_lock:
            self.stderr.write(f"collectfast: {message}", self.style.WARNING)

    def log_at(self, message: str, level: int) -> None:
        self.log(message, level=level)

    def collect(self) -> dict[str, list[str]]:
        if self.prune and not self.collectfast_enabled:
            raise CommandError("--prune needs collectfast: it does nothing with Django's stock collectstatic.")
        if not self.collectfast_enabled:
            return super().collect()
        assert self.strategy is not None
        deploy = self.deploy = Deploy(
            self.strategy,
            self.storage,
            log=self.log_at,
            warn=self.warn,
            dry_run=self.dry_run,
            cleared=self.clear,
            **self.pool_options,
            copied=self.copied_files,
            unmodified=self.unmodified_files,
            progress=Progress(
                lambda text: self.stderr.write(text, ending=""),
                enabled=self.verbosity >= 1,
                terminal=self.stderr.isatty(),
            ),
        )
        deploy.begin()
        destination = self.storage
        self.storage = _DrainBeforePostProcess(destination, deploy.drain, staged_post_process(deploy, destination))
        try:
            with _interruptible() as received:
                collected: dict[str, list[str]] = super().collect()
                deploy.drain()
                if received:
                    raise KeyboardInterrupt(f"signal {received[0]}")
        except BaseException as error:
            self.storage = destination
            deploy.finish(succeeded=False, failure=error)
            outcome = report.INTERRUPTED if isinstance(error, KeyboardInterrupt) else report.FAILED
            self.publish_report(outcome, str(error) or type(error).__name__)
            raise
        self.storage = destination
        deploy.finish(succeeded=True)
        collected["modified"] = self.copied_files + self.symlinked_files
        invalidation_failed = self.invalidate_after(deploy)
        self.publish_report(report.SUCCEEDED, None)
        if invalidation_failed is not None:
            raise invalidation_failed
        if self.prune:
            self.pruned = self.prune_after(deploy)
        return collected

    def prune_after(self, deploy: Deploy) -> str:
        """``--prune``, once the deploy succeeded: delete what no recent deploy needs (collectfast.prune)."""
        manifest = self.strategy if isinstance(self.strategy, ManifestStrategy) else None
        try:
            pruner = Pruner(
                self.storage,
                self.log_at,
                dry_run=self.dry_run,
                max_delete=self.max_delete,
                manifest=manifest,
                strategy=self.strategy,
            )
            return pruner.run(produced_by_deploy(deploy, self.storage))
        except (CommandError, ImproperlyConfigured) as error:
            raise CommandError(f"The deploy succeeded; then {error}") from error

    def invalidate_after(self, deploy: Deploy) -> CommandError | None:
        """COLLECTFAST_INVALIDATE, once the upload succeeded: the error to raise once the report is out, if any.

        Before pruning: a CDN that still serves old unhashed files must not lose what they reference.
        """
        if self.invalidator is None:
            return None
        names = cdn.changed_names([*deploy.copied, *deploy.uploaded_later], deploy.hashed_names, self.storage)
        deploy.invalidation = self.invalidator.invalidate(names, dry_run=self.dry_run, log=self.log_at)
        if deploy.invalidation.error is None:
            return None
        return CommandError(self.invalidator.failure_message(deploy.invalidation))

    def publish_report(self, outcome: str, message: str | None) -> None:
        assert self.deploy is not None
        account = report.build(
            self.deploy, outcome=outcome, message=message, post_processed=len(self.post_processed_files)
        )
        report.publish(account, self.report_path)

    def handle(self, **options: Any) -> str | None:
        self.prune, self.max_delete, self.pruned = options.get("prune", False), options.get("max_delete"), None
        summary: str | None = super().handle(**options)
        if summary and self.deploy is not None:
            extra = self.deploy.summary()
            if extra:
                summary += " " + extra
            if self.deploy.invalidation is not None:
                summary += " " + self.deploy.invalidation.summary()
        if summary and self.pruned:
            summary += "\n" + self.pruned
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
        if self.deploy is None:
            return super().copy_file(path, prefixed_path, source_storage)
        # Decided and uploaded together once the finder loop is over: see Deploy.drain().
        self.deploy.queue(path, prefixed_path, source_storage)
        return None
