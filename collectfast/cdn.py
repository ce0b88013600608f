"""Invalidate a CDN's cached copies of what a deploy changed: ``COLLECTFAST_INVALIDATE``.

After a successful run, the changed *unhashed* names (the run's uploads less the names a manifest
storage hashed, whose bytes never change under a name; ``staticfiles.json`` included when it was
uploaded) become URL paths as the CDN sees them, and the CDN is asked to forget them: in batches
within its limits, or as one wildcard when there are more than ``wildcard_over``.

A CDN is a small :class:`Invalidator` subclass, registered with :func:`register` under the key
its settings go by (or named in the setting by its dotted path). Each imports its SDK only when
it sends: :class:`CloudFrontInvalidator` (AWS only) needs boto3, from ``collectfast[s3]``, and
sends through :mod:`collectfast.backends.cloudfront`.
"""

from __future__ import annotations

import importlib.util
import posixpath
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from collectfast.object_parameters import storage_hashed_names

Log = Callable[[str, int], None]

CREATED, NOTHING, DRY_RUN, FAILED = "created", "nothing to invalidate", "dry run", "failed"
#: Paths named in a failure message before the rest are only counted.
NAMED_PATHS = 10
REQUIRED = object()


@dataclass
class Invalidation:
    """What one run asked a CDN to forget, and what came of it (the report's ``invalidation``)."""

    provider: str
    target: str
    label: str
    #: The changed unhashed names, relative to the storage's location.
    changed: list[str]
    #: The paths sent, or that a dry run would send: one per changed name, or one wildcard.
    paths: list[str]
    wildcard: bool
    status: str = CREATED
    ids: list[str] = field(default_factory=list)
    error: str | None = None
    requests: int = 0

    def as_report(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "target": self.target,
            "status": self.status,
            "changed": len(self.changed),
            "paths": self.paths,
            "wildcard": self.wildcard,
            "ids": self.ids,
            "requests": self.requests,
            "error": self.error,
        }

    def what(self) -> str:
        if self.wildcard:
            return f"{self.paths[0]} ({len(self.changed)} changed {_plural(len(self.changed), 'path')})"
        return f"{len(self.paths)} {_plural(len(self.paths), 'path')}"

    def summary(self) -> str:
        where = f"{self.label} {self.target}"
        if self.status == NOTHING:
            return f"Nothing to invalidate on {where}."
        if self.status == DRY_RUN:
            return f"Would invalidate {self.what()} on {where}."
        if self.status == FAILED:
            return f"Invalidating {self.what()} on {where} failed."
        ids = ", ".join(self.ids)
        return f"Invalidated {self.what()} on {where} ({_plural(len(self.ids), 'invalidation')} {ids})."


class Invalidator:
    """One CDN in front of the static storage. Subclasses set the class attributes and :meth:`send`.

    Options every CDN takes:

    - ``path_prefix`` (default ``"/"``): the URL path at which the CDN serves the bucket's root;
    - ``origin_path`` (default ``""``): the part of each key the CDN adds itself (CloudFront's
      origin path), removed from the key before ``path_prefix`` is put in front;
    - ``wildcard_over`` (default 100): more changed paths than this are invalidated as one wildcard
      (their common folder followed by ``*``), at most ``max_wildcard_over``.
    """

    #: The key in COLLECTFAST_INVALIDATE, and the words that name a target ("CloudFront distribution").
    key: ClassVar[str] = ""
    label: ClassVar[str] = "CDN"
    #: The option that names the target (a distribution, a URL map...).
    target_option: ClassVar[str] = ""
    #: Paths one request may carry; the highest ``wildcard_over`` allowed (the CDN's limit in progress).
    max_paths_per_request: ClassVar[int] = 1000
    max_wildcard_over: ClassVar[int] = 1000
    #: ``{option: (types, default)}``; a default of ``REQUIRED`` makes it required.
    options_spec: ClassVar[dict[str, tuple[tuple[type, ...], Any]]] = {
        "path_prefix": ((str,), "/"),
        "origin_path": ((str,), ""),
        "wildcard_over": ((int,), 100),
    }

    def __init__(self, options: Mapping[str, Any], storage: Any) -> None:
        problem = self.options_error(options)
        if problem:
            raise ImproperlyConfigured(f"COLLECTFAST_INVALIDATE[{self.key!r}] {problem}.")
        self.options = {name: options.get(name, default) for name, (_, default) in self.options_spec.items()}
        self.storage = storage
        location = str(getattr(storage, "location", "") or "").strip("/")
        self.location = f"{location}/" if location else ""

    @classmethod
    def options_error(cls, options: Any) -> str | None:
        """What is wrong with this CDN's options, or None; decided from the values alone (no I/O)."""
        if not isinstance(options, Mapping):
            return f"must be a dict of options, not {options!r}"
        unknown = sorted(set(options) - set(cls.options_spec))
        if unknown:
            return f"has unknown options {', '.join(map(repr, unknown))} (known: {', '.join(cls.options_spec)})"
        for name, (types, default) in cls.options_spec.items():
            if name not in options:
                if default is REQUIRED:
                    return f"needs the option {name!r}"
                continue
            value = options[name]
            if not isinstance(value, types) or isinstance(value, bool) or (default is REQUIRED and not value):
                return f"option {name!r} must be {' or '.join(t.__name__ for t in types)}, not {value!r}"
        prefix = options.get("path_prefix", "/")
        if not prefix.startswith("/"):
            return f"option 'path_prefix' must start with '/', not {prefix!r}"
        wildcard_over = options.get("wildcard_over", 100)
        if not 0 <= wildcard_over <= cls.max_wildcard_over:
            return (
                f"option 'wildcard_over' must be from 0 to {cls.max_wildcard_over} ({cls.label} limit), "
                f"not {wildcard_over!r}"
            )
        return None

    @property
    def target(self) -> str:
        return str(self.options.get(self.target_option, ""))

    def path(self, name: str) -> str:
        """The URL path of ``name`` (relative to the location), percent-encoded as Django's ``url()`` does."""
        key = self.location + name
        origin = str(self.options["origin_path"]).strip("/")
        if origin and key.startswith(f"{origin}/"):
            key = key[len(origin) + 1 :]
        # filepath_to_uri's safe characters, less '*': a literal '*' must not become a wildcard.
        return str(self.options["path_prefix"]).rstrip("/") + "/" + quote(key, safe="/~!()'")

    def plan(self, names: list[str]) -> tuple[list[str], bool]:
        """The paths to send for these names, and whether they were folded into one wildcard."""
        paths = [self.path(name) for name in names]
        if len(paths) <= int(self.options["wildcard_over"]):
            return paths, False
        folder = posixpath.commonpath([posixpath.dirname(path) for path in paths])
        return [folder.rstrip("/") + "/*"], True

    def send(self, paths: list[str], reference: str) -> str:
        """Ask the CDN to forget ``paths`` (at most ``max_paths_per_request``) in one request; its id."""
        raise NotImplementedError

    def describe_error(self, error: Exception) -> str:
        return f"{type(error).__name__}: {error}"

    def manual_command(self, paths: list[str]) -> str | None:
        """A shell command that sends the same invalidation by hand, if the CDN has one."""
        return None

    def invalidate(self, names: list[str], *, dry_run: bool = False, log: Log | None = None) -> Invalidation:
        """Invalidate the paths of ``names``; never raises for the CDN's errors (see ``status``, ``error``)."""
        log = log or (lambda message, level: None)
        paths, wildcard = self.plan(names) if names else ([], False)
        result = Invalidation(self.key, self.target, self.label, list(names), paths, wildcard)
        if not paths:
            result.status = NOTHING
            return result
        if dry_run:
            result.status = DRY_RUN
            for path in paths:
                log(f"Pretending to invalidate '{path}'", 1)
            return result
        reference = f"collectfast-{uuid.uuid4().hex}"
        size = self.max_paths_per_request
        for batch, start in enumerate(range(0, len(paths), size)):
            result.requests += 1
            try:
                result.ids.append(self.send(paths[start : start + size], f"{reference}-{batch}"))
            except Exception as error:
                result.status, result.error = FAILED, self.describe_error(error)
                return result
        for path in paths:
            log(f"Invalidating '{path}'", 2)
        return result

    def failure_message(self, result: Invalidation) -> str:
        """The command's error after a failed invalidation: the upload is complete, what to do next."""
        lines = [
            f"The upload is complete: every file is in place. Then invalidating {result.what()} on "
            f"{self.label} {self.target} failed: {result.error}"
        ]
        if result.ids:
            lines.append(f"  Already created: {', '.join(result.ids)}, for the first part of the paths.")
        shown = result.paths[:NAMED_PATHS]
        more = len(result.paths) - len(shown)
        lines.append("  Paths: " + ", ".join(shown) + (f" and {more} more" if more else ""))
        command = self.manual_command(result.paths)
        hint = f" or by hand: {command}" if command else ""
        lines.append(
            "The CDN may serve the old bytes of these paths until their cache lifetime ends. Fix the cause and "
            f"run collectstatic again (it uploads nothing, so nothing is invalidated){hint}."
        )
        return "\n".join(lines)


class CloudFrontInvalidator(Invalidator):
    """Amazon CloudFront: one ``CreateInvalidation`` per 3,000 paths (AWS only; boto3 imported when it sends).

    Options besides the common ones: ``distribution_id`` (required) and ``endpoint_url`` (another
    endpoint, for tests and emulators). Credentials are the storage's when it is an S3Storage
    (``access_key``/``secret_key``/``session_profile``), otherwise boto3's usual chain.
    """

    key = "cloudfront"
    label = "CloudFront distribution"
    target_option = "distribution_id"
    # Up to 3,000 paths of single files may be in progress per distribution (15 with a wildcard).
    max_paths_per_request = 3000
    max_wildcard_over = 3000
    options_spec = {
        **Invalidator.options_spec,
        "distribution_id": ((str,), REQUIRED),
        "endpoint_url": ((str, type(None)), None),
    }

    def __init__(self, options: Mapping[str, Any], storage: Any) -> None:
        super().__init__(options, storage)
        if importlib.util.find_spec("boto3") is None:
            raise ImproperlyConfigured(
                "COLLECTFAST_INVALIDATE['cloudfront'] needs boto3: python -m pip install 'collectfast[s3]'."
            )
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from collectfast.backends import cloudfront

            self._client = cloudfront.client(self.storage, self.options["endpoint_url"])
        return self._client

    def send(self, paths: list[str], reference: str) -> str:
        from collectfast.backends import cloudfront

        return cloudfront.create_invalidation(self.client(), self.target, paths, reference)

    def describe_error(self, error: Exception) -> str:
        response = getattr(error, "response", None)
        if isinstance(response, Mapping) and response.get("Error"):
            code = response["Error"].get("Code", "Error")
            message = response["Error"].get("Message", "")
            return f"{code}: {message}".rstrip(": ")
        return super().describe_error(error)

    def manual_command(self, paths: list[str]) -> str | None:
        quoted = " ".join(f"'{path}'" for path in paths[:NAMED_PATHS])
        return f"aws cloudfront create-invalidation --distribution-id {self.target} --paths {quoted}" + (
            " ..." if len(paths) > NAMED_PATHS else ""
        )


INVALIDATORS: dict[str, type[Invalidator]] = {}


def register(invalidator: type[Invalidator]) -> type[Invalidator]:
    """Make ``invalidator`` available under its ``key`` in COLLECTFAST_INVALIDATE."""
    INVALIDATORS[invalidator.key] = invalidator
    return invalidator


register(CloudFrontInvalidator)


def invalidator_class(key: str) -> type[Invalidator]:
    """The class a key of COLLECTFAST_INVALIDATE names: a registered key, or a dotted path."""
    if key in INVALIDATORS:
        return INVALIDATORS[key]
    if "." in key:
        try:
            found = import_string(key)
        except ImportError as error:
            raise ImproperlyConfigured(f"{key!r} does not import: {error}") from error
        if isinstance(found, type) and issubclass(found, Invalidator):
            return found
    raise ImproperlyConfigured(
        f"names no CDN: {key!r} (built in: {', '.join(map(repr, INVALIDATORS))}, or the dotted path "
        "of a collectfast.cdn.Invalidator subclass)"
    )


def setting_error(value: Any) -> str | None:
    """What is wrong with a COLLECTFAST_INVALIDATE value, or None; decided from the value alone (no I/O)."""
    if value is None:
        return None
    if len(value) != 1:
        return f"must name exactly one CDN, such as {{'cloudfront': {{'distribution_id': ...}}}}, not {value!r}"
    [(key, options)] = value.items()
    try:
        cls = invalidator_class(str(key))
    except ImproperlyConfigured as error:
        return str(error)
    problem = cls.options_error(options)
    return f"[{key!r}] {problem}" if problem else None


def from_settings(value: Mapping[str, Any] | None, storage: Any) -> Invalidator | None:
    """The invalidator that ``value`` (COLLECTFAST_INVALIDATE) configures for ``storage``, or None."""
    if not value:
        return None
    [(key, options)] = value.items()
    return invalidator_class(str(key))(options, storage)


def changed_names(uploaded: Iterable[str], hashed_in_run: set[str], storage: Any) -> list[str]:
    """The run's uploads that a CDN may hold old bytes of: every uploaded name that is not hashed.

    Hashed names are those post-processing learned in this run and those the storage knows now
    (collectfast.object_parameters); ``staticfiles.json`` is unhashed, so it counts once uploaded.
    """
    hashed = hashed_in_run | storage_hashed_names(storage)
    return _unique(name for name in uploaded if name not in hashed)


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"
