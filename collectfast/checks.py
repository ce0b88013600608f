"""System checks, run by ``collectstatic`` before it starts (tag ``staticfiles``).

Ids, never reused:

- E001 collectfast is listed after django.contrib.staticfiles.
- E002 a COLLECTFAST_* setting has the wrong type or value.
- E003 COLLECTFAST_STRATEGY does not import, or is not a Strategy.
- E004 COLLECTFAST_STRATEGY does not fit the configured storage.
- E005 COLLECTFAST_CACHE is not an alias in CACHES.
- W001 no strategy fits the configured storage: stock collectstatic runs.
- W002 a strategy that needs a lasting cache, with threads, uses a per-process cache.
- W003 the cache's TIMEOUT would expire checksums mid-deploy.
- W004 the cache's MAX_ENTRIES would evict checksums mid-deploy.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings as django_settings
from django.contrib.staticfiles.finders import get_finders
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured

from collectfast.conf import SETTINGS, setting_error, settings
from collectfast.strategies import Strategy, guess_strategy, load_strategy

PER_PROCESS_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}
CULLING_CACHES = {
    "django.core.cache.backends.filebased.FileBasedCache",
    "django.core.cache.backends.db.DatabaseCache",
}
MIN_CACHE_TIMEOUT = 3600


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages = _check_app_order()
    for name in SETTINGS:
        error = setting_error(name)
        if error:
            messages.append(Error(error, hint=f"Fix or remove {name} in your settings.", id="collectfast.E002"))
    if messages:
        return messages
    strategy, strategy_messages = _check_strategy()
    messages += strategy_messages
    if strategy is not None and strategy.uses_cache:
        messages += _check_cache(strategy)
    return messages


def _check_app_order() -> list[CheckMessage]:
    labels = [config.label for config in apps.get_app_configs()]
    if "staticfiles" in labels and labels.index("staticfiles") < labels.index("collectfast"):
        return [
            Error(
                "'collectfast' is listed after 'django.contrib.staticfiles' in INSTALLED_APPS, "
                "so collectstatic runs Django's command, not collectfast's.",
                hint="Move 'collectfast' above 'django.contrib.staticfiles' in INSTALLED_APPS.",
                id="collectfast.E001",
            )
        ]
    return []


def _check_strategy() -> tuple[type[Strategy[Any]] | None, list[CheckMessage]]:
    from django.contrib.staticfiles.storage import staticfiles_storage

    path = settings.strategy
    storage_class = staticfiles_storage.__class__
    storage_name = f"{storage_class.__module__}.{storage_class.__qualname__}"
    if path is None:
        path = guess_strategy(staticfiles_storage)
        if path is None:
            return None, [
                Warning(
                    f"collectfast has no strategy for the staticfiles storage {storage_name}, "
                    "so collectstatic behaves exactly like Django's.",
                    hint="Set COLLECTFAST_STRATEGY to a collectfast.strategies.Strategy subclass for this storage.",
                    id="collectfast.W001",
                )
            ]
    try:
        strategy = load_strategy(path)
    except ImproperlyConfigured as error:
        return None, [
            Error(
                str(error),
                hint="Use a built-in strategy such as 'collectfast.strategies.boto3.Boto3Strategy', "
                "or unset COLLECTFAST_STRATEGY to let collectfast choose.",
                id="collectfast.E003",
            )
        ]
    if not strategy.fits(staticfiles_storage):
        return strategy, [
            Error(
                f"COLLECTFAST_STRATEGY {path!r} does not work with the staticfiles storage {storage_name}.",
                hint="Pick the strategy written for that storage, or unset COLLECTFAST_STRATEGY "
                "to let collectfast choose.",
                id="collectfast.E004",
            )
        ]
    return strategy, []


def _check_cache(strategy: type[Strategy[Any]]) -> list[CheckMessage]:
    alias = settings.cache
    caches = getattr(django_settings, "CACHES", {})
    if alias not in caches:
        return [
            Error(
                f"COLLECTFAST_CACHE is {alias!r}, which is not an alias in CACHES.",
                hint=f"Add {alias!r} to CACHES, or set COLLECTFAST_CACHE to one of: {', '.join(caches) or 'none'}.",
                id="collectfast.E005",
            )
        ]
    config = caches[alias]
    backend = config.get("BACKEND", "")
    messages: list[CheckMessage] = []
    if backend in PER_PROCESS_CACHES:
        if not strategy.cache_optional and settings.threads > 1:
            messages.append(
                Warning(
                    f"COLLECTFAST_CACHE {alias!r} uses {backend.rpartition('.')[2]}, which lives in one process: "
                    "the worker threads start from nothing on every deploy and every file costs a remote lookup.",
                    hint="Point COLLECTFAST_CACHE at a cache shared between runs (Redis, Memcached, database), "
                    "or set COLLECTFAST_THREADS = 1 if a cold cache is intended.",
                    id="collectfast.W002",
                )
            )
        return messages
    timeout = config.get("TIMEOUT", 300)
    if timeout is not None and timeout < MIN_CACHE_TIMEOUT:
        messages.append(
            Warning(
                f"COLLECTFAST_CACHE {alias!r} has TIMEOUT {timeout}: checksums expire during or between deploys.",
                hint=f"Set CACHES[{alias!r}]['TIMEOUT'] to None (or at least {MIN_CACHE_TIMEOUT}), "
                "or give collectfast a cache of its own.",
                id="collectfast.W003",
            )
        )
    # Listing strategies keep one entry per 1,000 files; per-file strategies one per file.
    if backend in CULLING_CACHES and not strategy.cache_optional:
        max_entries = int(config.get("OPTIONS", {}).get("MAX_ENTRIES", 300))
        files = _count_static_files()
        if max_entries < files:
            messages.append(
                Warning(
                    f"COLLECTFAST_CACHE {alias!r} holds at most {max_entries} entries (MAX_ENTRIES) but there are "
                    f"{files} static files: checksums would be evicted mid-deploy.",
                    hint=f"Set CACHES[{alias!r}]['OPTIONS']['MAX_ENTRIES'] above {files}, "
                    "or use a cache that does not cull (Redis, Memcached).",
                    id="collectfast.W004",
                )
            )
    return messages


def _count_static_files() -> int:
    config: Any = apps.get_app_config("staticfiles")
    return sum(1 for finder in get_finders() for _ in finder.list(list(config.ignore_patterns)))
