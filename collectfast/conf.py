"""Every ``COLLECTFAST_*`` setting, read when used, typed and validated here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_THREADS = 10
MANIFEST_MODES = ("verified", "trusting")
#: The deploy manifest keeps this many deploy times (collectfast.manifest.HISTORY).
MAX_KEEP_DEPLOYS = 50


@dataclass(frozen=True)
class _Setting:
    name: str
    default: Any
    types: tuple[type, ...]
    describe: str
    valid: Callable[[Any], bool] = lambda value: True
    #: What is wrong with a value of the right type, in words (None: nothing), for values with a shape.
    explain: Callable[[Any], str | None] | None = None


def _non_negative(value: Any) -> bool:
    return isinstance(value, bool) or value >= 0


def _positive(value: Any) -> bool:
    return not isinstance(value, bool) and value > 0


def _non_empty(value: Any) -> bool:
    return bool(value)


def _grace(value: Any) -> bool:
    if isinstance(value, timedelta):
        return value >= timedelta(0)
    return not isinstance(value, bool) and value >= 0


def _keep_deploys(value: Any) -> bool:
    return not isinstance(value, bool) and 0 <= value <= MAX_KEEP_DEPLOYS


def _max_delete(value: Any) -> bool:
    return value is None or (not isinstance(value, bool) and value >= 0)


def _object_parameters_error(value: Any) -> str | None:
    from collectfast.object_parameters import rules_error

    return rules_error(value)


SETTINGS: dict[str, _Setting] = {
    s.name: s
    for s in (
        _Setting("COLLECTFAST_ENABLED", True, (bool,), "True or False"),
        _Setting("COLLECTFAST_DEBUG", False, (bool,), "True or False"),
        _Setting("COLLECTFAST_STRATEGY", None, (str, type, type(None)), "a Strategy class or its dotted path, or None"),
        _Setting("COLLECTFAST_CACHE", "default", (str,), "the alias of a cache in CACHES", _non_empty),
        _Setting("COLLECTFAST_CACHE_KEY_PREFIX", "collectfast06_asset_", (str,), "a string"),
        # Collectfast 2.2.0 took False for "no threads"; bool is an int, so it still validates.
        _Setting("COLLECTFAST_THREADS", DEFAULT_THREADS, (int,), "a whole number >= 0", _non_negative),
        _Setting("COLLECTFAST_RETRIES", 2, (int,), "a whole number >= 0", _non_negative),
        _Setting("COLLECTFAST_REPORT", None, (str, type(None)), "a file path for the JSON report, or None"),
        _Setting("COLLECTFAST_CONNECT_TIMEOUT", 5, (int, float), "a number of seconds > 0", _positive),
        _Setting("COLLECTFAST_READ_TIMEOUT", 10, (int, float), "a number of seconds > 0", _positive),
        _Setting(
            "COLLECTFAST_MANIFEST",
            "collectfast-manifest.json",
            (str,),
            "a key relative to the storage's location",
            _non_empty,
        ),
        _Setting(
            "COLLECTFAST_MANIFEST_MODE",
            "verified",
            (str,),
            " or ".join(repr(m) for m in MANIFEST_MODES),
            lambda value: value in MANIFEST_MODES,
        ),
        _Setting(
            "COLLECTFAST_PRUNE_KEEP_DEPLOYS",
            3,
            (int,),
            f"a whole number from 0 to {MAX_KEEP_DEPLOYS}",
            _keep_deploys,
        ),
        _Setting(
            "COLLECTFAST_PRUNE_GRACE",
            timedelta(days=7),
            (int, float, timedelta),
            "a number of seconds >= 0 or a timedelta",
            _grace,
        ),
        _Setting(
            "COLLECTFAST_PRUNE_MAX_DELETE",
            None,
            (int, type(None)),
            "a whole number >= 0, or None (refuse above 50% of the objects or 1,000)",
            _max_delete,
        ),
        _Setting(
            "COLLECTFAST_OBJECT_PARAMETERS",
            (),
            (str, list, tuple),
            "a preset's name ('hashed-immutable') or a list of (pattern, parameters) pairs",
            explain=_object_parameters_error,
        ),
        _Setting(
            "COLLECTFAST_INVALIDATE",
            None,
            (dict, type(None)),
            # Its inside is checked by collectfast.cdn (system check E002, and collectstatic before it starts).
            "None or a dict naming one CDN, such as {'cloudfront': {'distribution_id': ...}}",
        ),
    )
}


def setting_error(name: str) -> str | None:
    """Describe what is wrong with one setting's value, or None if it is fine."""
    spec = SETTINGS[name]
    value = getattr(django_settings, name, spec.default)
    if not isinstance(value, spec.types) or not spec.valid(value):
        return f"{name} must be {spec.describe}, not {value!r}."
    problem = spec.explain(value) if spec.explain is not None else None
    if problem:
        return f"{name} {problem}."
    return None


def _get(name: str) -> Any:
    error = setting_error(name)
    if error:
        raise ImproperlyConfigured(error)
    return getattr(django_settings, name, SETTINGS[name].default)


class Settings:
    """Read a setting each time it is asked for, so ``override_settings`` just works."""

    @property
    def enabled(self) -> bool:
        return bool(_get("COLLECTFAST_ENABLED"))

    @property
    def debug(self) -> bool:
        return bool(_get("COLLECTFAST_DEBUG"))

    @property
    def strategy(self) -> str | type[Any] | None:
        value: str | type[Any] | None = _get("COLLECTFAST_STRATEGY")
        return value

    @property
    def cache(self) -> str:
        return str(_get("COLLECTFAST_CACHE"))

    @property
    def cache_key_prefix(self) -> str:
        return str(_get("COLLECTFAST_CACHE_KEY_PREFIX"))

    @property
    def threads(self) -> int:
        value = _get("COLLECTFAST_THREADS")
        if value is True:
            return DEFAULT_THREADS
        return int(value)

    @property
    def retries(self) -> int:
        return int(_get("COLLECTFAST_RETRIES"))

    @property
    def manifest(self) -> str:
        return str(_get("COLLECTFAST_MANIFEST"))

    @property
    def manifest_mode(self) -> str:
        return str(_get("COLLECTFAST_MANIFEST_MODE"))

    @property
    def report(self) -> str | None:
        value: str | None = _get("COLLECTFAST_REPORT")
        return value

    @property
    def connect_timeout(self) -> float:
        return float(_get("COLLECTFAST_CONNECT_TIMEOUT"))

    @property
    def read_timeout(self) -> float:
        return float(_get("COLLECTFAST_READ_TIMEOUT"))

    @property
    def prune_keep_deploys(self) -> int:
        return int(_get("COLLECTFAST_PRUNE_KEEP_DEPLOYS"))

    @property
    def prune_grace(self) -> timedelta:
        value = _get("COLLECTFAST_PRUNE_GRACE")
        return value if isinstance(value, timedelta) else timedelta(seconds=value)

    @property
    def prune_max_delete(self) -> int | None:
        value = _get("COLLECTFAST_PRUNE_MAX_DELETE")
        return None if value is None else int(value)

    @property
    def object_parameters(self) -> tuple[tuple[str, Any], ...]:
        """The rules of COLLECTFAST_OBJECT_PARAMETERS, a preset's name resolved (collectfast.object_parameters)."""
        from collectfast.object_parameters import rules

        return rules(_get("COLLECTFAST_OBJECT_PARAMETERS"))

    @property
    def invalidate(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = _get("COLLECTFAST_INVALIDATE")
        return value


settings = Settings()
