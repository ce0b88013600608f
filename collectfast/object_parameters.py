"""Upload parameters per path: ``COLLECTFAST_OBJECT_PARAMETERS``, layered on the storage's own.

An ordered list of ``(pattern, parameters)``: the first pattern that matches a name (relative to
the storage's location) adds its parameters on top of what the storage's ``get_object_parameters``
returns (its ``object_parameters``), key by key. A pattern is a glob (``fnmatch``, case-sensitive,
``*`` also matches ``/``), or :data:`HASHED`, which matches the names a manifest storage hashed.

A name is *hashed* when the storage's ``hashed_files`` maps some other name to it: the mapping
loaded from the live ``staticfiles.json`` when the storage was built, and the one post-processing
makes in this run. Originals, ``staticfiles.json``, intermediate files (``keep_intermediate_files``)
and names a ``file_hash`` left unchanged are not hashed.

No SDK is imported here: collectfast.conf validates the setting with :func:`rules_error`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

#: The pattern that matches hashed names (see the module's docstring).
HASHED = ":hashed:"
#: ``Cache-Control`` for content-hashed names: their bytes never change.
IMMUTABLE = "public, max-age=31536000, immutable"
#: ``Cache-Control`` for every other name: a CDN or browser asks again after five minutes.
SHORT = "public, max-age=300"

Rule = tuple[str, Mapping[str, Any]]

#: The preset for manifest storages: hashed names immutable, everything else short.
HASHED_IMMUTABLE: tuple[Rule, ...] = (
    (HASHED, {"CacheControl": IMMUTABLE}),
    ("*", {"CacheControl": SHORT}),
)
PRESETS: dict[str, tuple[Rule, ...]] = {"hashed-immutable": HASHED_IMMUTABLE}


def rules_error(value: Any) -> str | None:
    """What is wrong with a ``COLLECTFAST_OBJECT_PARAMETERS`` value, or None."""
    if isinstance(value, str):
        if value in PRESETS:
            return None
        return f"names no preset: {value!r} (presets: {', '.join(repr(name) for name in PRESETS)})"
    if not isinstance(value, (list, tuple)):
        return f"must be a preset's name or a list of (pattern, parameters) pairs, not {value!r}"
    for index, rule in enumerate(value):
        if not (isinstance(rule, (list, tuple)) and len(rule) == 2):
            return f"item {index} must be a (pattern, parameters) pair, not {rule!r}"
        pattern, parameters = rule
        if not isinstance(pattern, str) or not pattern:
            return f"item {index}: the pattern must be a non-empty string, not {pattern!r}"
        if not isinstance(parameters, Mapping) or not all(isinstance(key, str) for key in parameters):
            return f"item {index}: the parameters must be a dict of upload parameters, not {parameters!r}"
    return None


def rules(value: Any) -> tuple[Rule, ...]:
    """The rules of a valid setting value (a preset's name, or the rules themselves)."""
    if isinstance(value, str):
        return PRESETS[value]
    return tuple((str(pattern), dict(parameters)) for pattern, parameters in value)


def hashed_names(hashed_files: Mapping[str, str]) -> set[str]:
    """The hashed names of a ``hashed_files`` mapping: every value that differs from its key."""
    return {name for original, name in hashed_files.items() if name != original}


def storage_hashed_names(storage: Any) -> set[str]:
    """The hashed names a storage knows now: for a manifest storage, those of the ``staticfiles.json`` it loaded."""
    hashed_files = getattr(storage, "hashed_files", None)
    return hashed_names(hashed_files) if isinstance(hashed_files, Mapping) else set()


class PathParameters:
    """The rules of one run, and the hashed names learned so far (shared by every copy it layers)."""

    def __init__(self, rules: Iterable[Rule], hashed: Iterable[str] = ()) -> None:
        self.rules = tuple(rules)
        self._lock = threading.Lock()
        self.hashed: frozenset[str] = frozenset(hashed)

    def learn_hashed(self, names: Iterable[str]) -> None:
        """Add hashed names (post-processing's); the copies see them from their next upload on."""
        with self._lock:
            self.hashed = self.hashed.union(names)

    def rule_for(self, name: str) -> Mapping[str, Any] | None:
        """The parameters of the first rule that matches ``name`` (relative to the location), or None."""
        for pattern, parameters in self.rules:
            if name in self.hashed if pattern == HASHED else fnmatchcase(name, pattern):
                return parameters
        return None

    def layer(self, storage: Any, prefix: str) -> None:
        """Give ``storage`` (a copy, never the user's instance) a ``get_object_parameters`` with the rules on top.

        django-storages calls it with the key (location included: ``prefix``) from ``_get_write_parameters``,
        for single PUTs and for ``_save`` (multipart) alike.
        """
        base: Callable[[str], dict[str, Any]] = storage.get_object_parameters

        def get_object_parameters(key: str) -> dict[str, Any]:
            params = dict(base(key))
            extra = self.rule_for(key[len(prefix) :] if prefix and key.startswith(prefix) else key)
            if extra:
                params.update(extra)
            return params

        storage.get_object_parameters = get_object_parameters
