"""``collectfast_prune``: delete the objects no recent deploy needs, on its own (docs/pruning.rst)."""

from __future__ import annotations

from typing import Any

from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from collectfast.conf import settings
from collectfast.prune import Pruner, collectstatic_ignore_patterns, produced_by_tree
from collectfast.strategies import DisabledStrategy, Strategy, guess_strategy, load_strategy
from collectfast.strategies.manifest_base import ManifestStrategy, ManifestUnavailable


class Command(BaseCommand):
    help = (
        "Delete the objects under the static files storage's location that the local tree does not produce, "
        "that none of the last COLLECTFAST_PRUNE_KEEP_DEPLOYS deploys produced, and that are older than "
        "COLLECTFAST_PRUNE_GRACE. Uploads nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-n",
            "--dry-run",
            action="store_true",
            help="Print what would be deleted, with sizes and ages; delete nothing.",
        )
        parser.add_argument(
            "--max-delete",
            type=int,
            default=None,
            metavar="N",
            help="Refuse to delete more than N objects (default: COLLECTFAST_PRUNE_MAX_DELETE, or half of the "
            "objects and at most 1,000).",
        )
        # As collectstatic's, so that the tree found here is the one it deploys.
        parser.add_argument("-i", "--ignore", action="append", default=[], dest="ignore_patterns", metavar="PATTERN")
        parser.add_argument("--no-default-ignore", action="store_false", dest="use_default_ignore_patterns")

    def handle(self, **options: Any) -> None:
        if options["max_delete"] is not None and options["max_delete"] < 0:
            raise CommandError("--max-delete must be 0 or more.")
        try:
            strategy = self.strategy()
            manifest = strategy if isinstance(strategy, ManifestStrategy) else None
            if manifest is not None:
                self.read_manifest(manifest)
            pruner = Pruner(
                staticfiles_storage,
                self.log,
                dry_run=options["dry_run"],
                max_delete=options["max_delete"],
                manifest=manifest,
                strategy=strategy,
            )
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from error
        patterns = collectstatic_ignore_patterns(
            options["ignore_patterns"], use_default=options["use_default_ignore_patterns"]
        )
        summary = pruner.run(produced_by_tree(staticfiles_storage, ignore_patterns=patterns))
        self.log(summary, 1)

    def log(self, message: str, level: int) -> None:
        if self.verbosity >= level:
            self.stdout.write(message)

    def warn(self, message: str) -> None:
        self.stderr.write(f"collectfast: {message}", self.style.WARNING)

    def execute(self, *args: Any, **options: Any) -> Any:
        self.verbosity = int(options.get("verbosity", 1))
        return super().execute(*args, **options)

    def strategy(self) -> Strategy[Any] | None:
        """The strategy collectstatic deploys with (its history and kept state matter here); None for stock."""
        if not settings.enabled:
            return None
        path = settings.strategy or guess_strategy(staticfiles_storage)
        if path is None:
            return None
        strategy_class = load_strategy(path)
        if issubclass(strategy_class, DisabledStrategy) or not strategy_class.fits(staticfiles_storage):
            return None
        strategy = strategy_class(staticfiles_storage)
        strategy.warning_handler = self.warn
        return strategy

    def read_manifest(self, strategy: ManifestStrategy[Any]) -> None:
        try:
            strategy.adopt(strategy.read_manifest())
        except ManifestUnavailable as error:
            raise CommandError(f"Pruning refused: {error} Nothing was deleted.") from error
