"""Strategies written for Collectfast 2.2.0 run unchanged; the shapes below are those of its own test strategies."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.cache import caches
from django.core.files.storage import FileSystemStorage, Storage

from collectfast.strategies.base import CachingHashStrategy, Strategy
from collectfast.strategies.filesystem import CachingFileSystemStrategy
from tests.fixtures import StaticTree, collectstatic

AUDIT: list[tuple[str, str]] = []
CACHED_LOOKUPS: list[tuple[str, str]] = []


class Collectfast22Strategy(CachingHashStrategy[FileSystemStorage]):
    """Collectfast 2.2.0's tests/strategies/test_caching_hash_strategy.py strategy, verbatim."""

    def __init__(self) -> None:
        super().__init__(FileSystemStorage())

    def get_remote_file_hash(self, prefixed_path: str) -> None:
        pass


class AuditMixin(Strategy[Storage]):
    """A cooperative hook, as 2.2.0 allowed: its base hooks all chained through super()."""

    def post_copy_hook(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        super().post_copy_hook(path, prefixed_path, local_storage)
        AUDIT.append(("copied", prefixed_path))

    def on_skip_hook(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        super().on_skip_hook(path, prefixed_path, local_storage)
        AUDIT.append(("skipped", prefixed_path))

    def pre_should_copy_hook(self) -> None:
        super().pre_should_copy_hook()
        AUDIT.append(("pre", ""))


class AuditedCachingStrategy(CachingFileSystemStrategy, AuditMixin):
    pass


class SuperCallingStrategy(CachingFileSystemStrategy):
    def post_copy_hook(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        super().post_copy_hook(path, prefixed_path, local_storage)
        AUDIT.append(("copied", prefixed_path))


class NoSuperStrategy(CachingFileSystemStrategy):
    """2.2.0 invalidated in should_copy_file: its post_copy_hook could be replaced without super()."""

    def post_copy_hook(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        AUDIT.append(("copied", prefixed_path))


class LookupRecordingStrategy(CachingFileSystemStrategy):
    def get_cached_remote_file_hash(self, path: str, prefixed_path: str) -> str | None:
        CACHED_LOOKUPS.append((path, prefixed_path))
        return super().get_cached_remote_file_hash(path, prefixed_path)


@pytest.fixture
def static_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "static_root"
    settings.STATIC_ROOT = str(root)
    caches["default"].clear()
    AUDIT.clear()
    CACHED_LOOKUPS.clear()
    return root


def test_get_cached_remote_file_hash_keeps_the_2_2_signature() -> None:
    strategy = Collectfast22Strategy()
    caches["default"].clear()
    mocked = mock.MagicMock(return_value="hash")
    strategy.get_remote_file_hash = mocked  # type: ignore[method-assign]

    assert strategy.get_cached_remote_file_hash("path", "prefixed_path") == "hash"
    mocked.assert_called_once_with("prefixed_path")
    mocked.reset_mock()
    assert strategy.get_cached_remote_file_hash("path", "prefixed_path") == "hash"
    mocked.assert_not_called()


def test_an_override_of_get_cached_remote_file_hash_is_called_with_both_paths(
    settings: Any, static_root: Path, static_tree: StaticTree
) -> None:
    settings.COLLECTFAST_STRATEGY = "tests.test_compat.LookupRecordingStrategy"
    settings.STATICFILES_DIRS = [("pre", str(static_tree.root))]
    static_tree.write("a.css", "a")

    collectstatic()

    assert CACHED_LOOKUPS == [("a.css", "pre/a.css")]
    assert (static_root / "pre" / "a.css").read_text() == "a"


def test_hooks_chain_through_super_to_a_cooperative_mixin(
    settings: Any, static_root: Path, static_tree: StaticTree
) -> None:
    settings.COLLECTFAST_STRATEGY = "tests.test_compat.AuditedCachingStrategy"
    static_tree.write("a.css", "a")
    static_tree.write("b.css", "b")
    collectstatic()
    static_tree.write("a.css", "changed")
    AUDIT.clear()

    collectstatic()

    assert sorted(AUDIT) == [("copied", "a.css"), ("pre", ""), ("pre", ""), ("skipped", "b.css")]


def deploy_change_and_revert(static_tree: StaticTree, static_root: Path) -> None:
    """The revert is only seen if the upload of "two" dropped the cached hash of "one"."""
    static_tree.write("a.css", "one")
    collectstatic()
    collectstatic()  # looks the copied file up, and caches its hash
    static_tree.write("a.css", "two")
    collectstatic()
    static_tree.write("a.css", "one")
    collectstatic()
    assert (static_root / "a.css").read_text() == "one"


def test_a_post_copy_hook_calling_super_keeps_the_cache_right(
    settings: Any, static_root: Path, static_tree: StaticTree
) -> None:
    settings.COLLECTFAST_STRATEGY = "tests.test_compat.SuperCallingStrategy"
    deploy_change_and_revert(static_tree, static_root)
    assert AUDIT == [("copied", "a.css")] * 3


def test_a_post_copy_hook_without_super_keeps_the_cache_right(
    settings: Any, static_root: Path, static_tree: StaticTree
) -> None:
    settings.COLLECTFAST_STRATEGY = "tests.test_compat.NoSuperStrategy"
    deploy_change_and_revert(static_tree, static_root)
    assert AUDIT == [("copied", "a.css")] * 3


def test_disabled_strategy_exists_as_in_2_2() -> None:
    from collectfast.strategies import DisabledStrategy

    strategy = DisabledStrategy(FileSystemStorage())
    assert isinstance(strategy, Strategy)
    with pytest.raises(NotImplementedError):
        strategy.should_copy_file("a.css", "a.css", FileSystemStorage())
    with pytest.raises(NotImplementedError):
        strategy.pre_should_copy_hook()


class InterleavingSink:
    """Writes each message in small pieces, yielding between them; counts writes that overlap."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.active = 0
        self.overlaps = 0
        self._lock = threading.Lock()

    def write(self, message: str) -> None:
        with self._lock:
            self.active += 1
            self.overlaps += self.active > 1
        for start in range(0, len(message), 64):
            self.pieces.append(message[start : start + 64])
            time.sleep(0)
        with self._lock:
            self.active -= 1


def test_warnings_from_many_threads_are_written_one_at_a_time() -> None:
    sink = InterleavingSink()
    strategy = Collectfast22Strategy()
    strategy.warning_handler = sink.write
    barrier = threading.Barrier(16)
    messages = [f"<{n:02d}{'x' * 2000}>" for n in range(16)]

    def warn(message: str) -> None:
        barrier.wait()
        strategy.warn(message)

    threads = [threading.Thread(target=warn, args=(message,)) for message in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sink.overlaps == 0
    written = "".join(sink.pieces)
    assert sorted(written.replace("><", ">\n<").splitlines()) == messages
