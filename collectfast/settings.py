"""Collectfast 2.2.0's ``collectfast.settings`` names, for code that imported them.

2.2.0 computed them once, at import; here each is read from the validated settings
(collectfast.conf) when it is accessed, so ``override_settings`` changes them too.
New code should use ``collectfast.conf.settings``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings

from collectfast.conf import settings

# django-storages' default, which 2.2.0 copied.
GZIP_CONTENT_TYPES = (
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "image/svg+xml",
)

_NAMES: dict[str, Callable[[], Any]] = {
    "debug": lambda: settings.debug,
    "cache_key_prefix": lambda: settings.cache_key_prefix,
    "cache": lambda: settings.cache,
    "threads": lambda: settings.threads,
    "enabled": lambda: settings.enabled,
    "aws_is_gzipped": lambda: getattr(django_settings, "AWS_IS_GZIPPED", False),
    "gzip_content_types": lambda: getattr(django_settings, "GZIP_CONTENT_TYPES", GZIP_CONTENT_TYPES),
}

__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    try:
        read = _NAMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return read()


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES])
