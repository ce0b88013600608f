"""System checks, run by ``collectstatic`` before it starts (tag ``staticfiles``).

They decide from the settings and the storage class alone: no storage is created, no request
is made and no static file is listed, so ``check``, ``migrate`` and ``runserver`` never depend
on a reachable bucket.

Ids, never reused:

- E001 collectfast is listed after django.contrib.staticfiles.
- E002 a COLLECTFAST_* setting has the wrong type or value.
- E003 COLLECTFAST_STRATEGY does not import or is not a Strategy, or an extra it or the storage needs is missing.
- E004 COLLECTFAST_STRATEGY does not fit the configured storage.
- E005 COLLECTFAST_CACHE is not an alias in CACHES.
- E006 STORAGES['staticfiles']['BACKEND'] does not import.
- W001 no strategy fits the configured storage: stock collectstatic runs.
- W002 a strategy that needs a lasting cache, with threads, uses a per-process cache.
- W003 the cache's TIMEOUT would expire checksums mid-deploy.
- W004 the cache's MAX_ENTRIES would evict checksums mid-deploy (at run time: cache_capacity_warning()).
- W005 an unknown COLLECTFAST_* setting (a typo).
- W006 a Collectfasta (COLLECTFASTA_*) setting, which collectfast ignores.
- W007 AWS_PRELOAD_METADATA, which nothing reads any more.
- W008 STATICFILES_STORAGE, which Django ignores since 5.1.
- W009 COLLECTFAST_OBJECT_PARAMETERS is set, but the strategy or storage does not upload with it (only S3 does).

A malformed COLLECTFAST_OBJECT_PARAMETERS or COLLECTFAST_INVALIDATE is E002, with what is wrong in it.
"""

from __future__ import annotations

import difflib
from typing import Any

from django.apps import apps
from django.conf import STATICFILES_STORAGE_ALIAS
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.utils.module_loading import import_string

from collectfast import cdn
from collectfast.conf import SETTINGS, setting_error, settings
from collectfast.strategies import (
    S3_STORAGE,
    MissingExtra,
    Strategy,
    class_is,
    dotted_name,
    guess_strategy,
    load_strategy,
    missing_extra,
)

PER_PROCESS_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}
CULLING_CACHES = {
    "django.core.cache.backends.filebased.FileBasedCache",
    "django.core.cache.backends.db.DatabaseCache",
}
MIN_CACHE_TIMEOUT = 3600
BOTO3_STRATEGY = "collectfast.strategies.boto3.Boto3Strategy"
BUILTIN_STRATEGIES = {
    BOTO3_STRATEGY,
    "collectfast.strategies.manifest.S3ManifestStrategy",
    "collectfast.strategies.gcloud.GoogleCloudStrategy",
    "collectfast.strategies.gcloud.GoogleCloudManifestStrategy",
    "collectfast.strategies.azure.AzureStrategy",
    "collectfast.strategies.azure.AzureManifestStrategy",
    "collectfast.strategies.filesystem.FileSystemStrategy",
    "collectfast.strategies.filesystem.CachingFileSystemStrategy",
    "collectfast.strategies.upload_all.UploadAllStrategy",
}
CHOOSE_HINT = "Use a built-in strategy such as 'collectfast.strategies.boto3.Boto3Strategy', "
UNSET_HINT = "or unset COLLECTFAST_STRATEGY to let collectfast choose."


def invalidate_error() -> str | None:
    """What is wrong inside COLLECTFAST_INVALIDATE (its type is checked with the other settings), or None."""
    if setting_error("COLLECTFAST_INVALIDATE"):
        return None
    error = cdn.setting_error(settings.invalidate)
    return f"COLLECTFAST_INVALIDATE {error}." if error else None


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages = _check_app_order()
    for name in SETTINGS:
        error = setting_error(name)
        if error:
            messages.append(Error(error, hint=f"Fix or remove {name} in your settings.", id="collectfast.E002"))
    invalidate = invalidate_error()
    if invalidate:
        hint = "Fix or remove COLLECTFAST_INVALIDATE in your settings."
        messages.append(Error(invalidate, hint=hint, id="collectfast.E002"))
    if not messages:
        strategy, strategy_messages = _check_strategy()
        messages += strategy_messages
        if strategy is not None and strategy.uses_cache:
            messages += _check_cache(strategy)
        messages += _check_object_parameters(strategy)
    return messages + _check_names()


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


def _storage_class() -> tuple[type[Storage] | None, list[CheckMessage]]:
    """The class of STORAGES['staticfiles'], imported but never instantiated (that may reach the bucket)."""
    config = getattr(django_settings, "STORAGES", {}).get(STATICFILES_STORAGE_ALIAS)
    if not config or "BACKEND" not in config:
        return None, []  # Django names the missing storage itself, once something uses it.
    backend = config["BACKEND"]
    try:
        storage_class: type[Storage] = import_string(backend)
        return storage_class, []
    except (ImportError, ImproperlyConfigured) as error:
        extra = missing_extra(backend, error)
        if extra is not None:
            message = f"STORAGES['staticfiles'] uses {backend}, which needs collectfast's {extra!r} extra: {error}"
            return None, [Error(message, hint=MissingExtra("", extra).install, id="collectfast.E003")]
        return None, [
            Error(
                f"STORAGES['staticfiles']['BACKEND'] {backend!r} does not import: {error}",
                hint="Fix the dotted path, or install the package that provides it.",
                id="collectfast.E006",
            )
        ]


def _check_strategy() -> tuple[type[Strategy[Any]] | None, list[CheckMessage]]:
    storage_class, messages = _storage_class()
    if storage_class is None:
        return None, messages
    storage_name = dotted_name(storage_class)
    path = settings.strategy
    if path is None:
        path = guess_strategy(storage_class)
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
    except MissingExtra as error:
        return None, [Error(str(error), hint=f"Install it: {error.install}", id="collectfast.E003")]
    except ImproperlyConfigured as error:
        return None, [Error(str(error), hint=CHOOSE_HINT + UNSET_HINT, id="collectfast.E003")]
    if not strategy.fits_class(storage_class):
        return strategy, [
            Error(
                f"COLLECTFAST_STRATEGY {dotted_name(path)!r} does not work with the staticfiles storage "
                f"{storage_name}.",
                hint="Pick the strategy written for that storage, " + UNSET_HINT,
                id="collectfast.E004",
            )
        ]
    return strategy, []


def _check_object_parameters(strategy: type[Strategy[Any]] | None) -> list[CheckMessage]:
    """W009: per-path parameters that no upload of this configuration applies."""
    storage_class, _ = _storage_class()
    if not settings.object_parameters or strategy is None or storage_class is None:
        return []
    if getattr(strategy, "applies_object_parameters", False) and class_is(storage_class, S3_STORAGE):
        return []
    return [
        Warning(
            f"COLLECTFAST_OBJECT_PARAMETERS is set, but {dotted_name(strategy)} with {dotted_name(storage_class)} "
            "does not apply it: only the S3 strategies' uploads do.",
            hint="Use S3Storage with Boto3Strategy, S3ManifestStrategy or UploadAllStrategy, "
            "or remove COLLECTFAST_OBJECT_PARAMETERS.",
            id="collectfast.W009",
        )
    ]


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
    return messages


def cache_capacity_warning(strategy: type[Strategy[Any]], n_files: int) -> str | None:
    """collectfast.W004 for a run of ``n_files`` files, or None: counting them is collectstatic's walk, not a check's.

    Listing strategies keep one cache entry per 1,000 files; per-file ones (cache_optional False) one per file.
    """
    alias = settings.cache
    config = getattr(django_settings, "CACHES", {}).get(alias, {})
    if not strategy.uses_cache or strategy.cache_optional or config.get("BACKEND") not in CULLING_CACHES:
        return None
    max_entries = int(config.get("OPTIONS", {}).get("MAX_ENTRIES", 300))
    if n_files <= max_entries:
        return None
    return (
        f"COLLECTFAST_CACHE {alias!r} holds at most {max_entries} entries (MAX_ENTRIES) but there are {n_files} "
        f"static files: checksums are evicted mid-deploy and looked up again (collectfast.W004). "
        f"Set CACHES[{alias!r}]['OPTIONS']['MAX_ENTRIES'] above {n_files}, "
        "or use a cache that does not cull (Redis, Memcached)."
    )


def _check_names() -> list[CheckMessage]:
    """Settings that look like they configure collectfast but do nothing."""
    messages: list[CheckMessage] = []
    for name in sorted(n for n in dir(django_settings) if n.startswith(("COLLECTFAST_", "COLLECTFASTA_"))):
        if name.startswith("COLLECTFASTA_"):
            messages.append(_collectfasta_warning(name))
        elif name not in SETTINGS:
            closest = difflib.get_close_matches(name, SETTINGS, n=1)
            hint = f"Did you mean {closest[0]}?" if closest else f"collectfast's settings: {', '.join(SETTINGS)}."
            messages.append(
                Warning(f"{name} is not a collectfast setting: it has no effect.", hint=hint, id="collectfast.W005")
            )
    if hasattr(django_settings, "AWS_PRELOAD_METADATA"):
        messages.append(
            Warning(
                "AWS_PRELOAD_METADATA has no effect: django-storages ignores it and collectfast does not need it.",
                hint="Remove AWS_PRELOAD_METADATA.",
                id="collectfast.W007",
            )
        )
    if hasattr(django_settings, "STATICFILES_STORAGE"):
        backend = getattr(django_settings, "STORAGES", {}).get(STATICFILES_STORAGE_ALIAS, {}).get("BACKEND")
        messages.append(
            Warning(
                f"STATICFILES_STORAGE is ignored since Django 5.1: STORAGES['staticfiles'] replaces it, "
                f"and collectstatic uses {backend}.",
                hint="Move its value to STORAGES['staticfiles']['BACKEND'], then remove STATICFILES_STORAGE.",
                id="collectfast.W008",
            )
        )
    return messages


def _collectfasta_warning(name: str) -> CheckMessage:
    equivalent = "COLLECTFAST_" + name.removeprefix("COLLECTFASTA_")
    hint = f"Rename it to {equivalent}." if equivalent in SETTINGS else "Remove it: collectfast has no equivalent."
    if name == "COLLECTFASTA_STRATEGY":
        path = _strategy_for(getattr(django_settings, name))
        hint = f"Replace it with {equivalent} = {path!r}, or remove it: " if path else "Remove it: "
        hint += f"collectfast picks the strategy that fits the storage (set {equivalent} to override)."
    return Warning(f"{name} is a Collectfasta setting: collectfast ignores it.", hint=hint, id="collectfast.W006")


def _strategy_for(collectfasta_path: Any) -> str | None:
    """collectfast's strategy for a Collectfasta one: the same module and name, else Boto3Strategy for S3."""
    path = str(collectfasta_path).replace("collectfasta.", "collectfast.", 1)
    if path in BUILTIN_STRATEGIES:
        return path
    return BOTO3_STRATEGY if path.startswith("collectfast.strategies.boto3.") else None
