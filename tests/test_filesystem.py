"""Local destinations, and strategies written against Collectfast 2.2.0's API."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from django.core.management.base import CommandError

from collectfast.strategies.base import CachingHashStrategy, HashStrategy, Strategy
from collectfast.strategies.filesystem import replace_file
from tests.fixtures import Run, StaticTree, collectstatic

CALLS: list[tuple[str, str]] = []


class RecordingStrategy(Strategy[Storage]):
    """Written as a Collectfast 2.2.0 user would: only should_copy_file and the old hooks."""

    def should_copy_file(self, path: str, prefixed_path: str, local_storage: Storage) -> bool:
        CALLS.append(("decide", prefixed_path))
        return not prefixed_path.startswith("keep/")

    def pre_should_copy_hook(self) -> None:
        CALLS.append(("pre", ""))

    def on_skip_hook(self, path: str, prefixed_path: str, local_storage: Storage) -> None:
        CALLS.append(("skip", prefixed_path))


class OldHashStrategy(HashStrategy[Storage]):
    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        try:
            return self.get_local_file_hash(prefixed_path, self.remote_storage)
        except FileNotFoundError:
            return None


class CountingCachingStrategy(CachingHashStrategy[Storage]):
    lookups = 0

    def get_remote_file_hash(self, prefixed_path: str) -> str | None:
        type(self).lookups += 1
        try:
            return self.get_local_file_hash(prefixed_path, self.remote_storage)
        except FileNotFoundError:
            return None


@pytest.fixture
def static_root(settings, tmp_path: Path) -> Path:
    root = tmp_path / "static_root"
    settings.STATIC_ROOT = str(root)
    return root


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_filesystem_strategy_is_the_default_and_copies_only_changes(static_root: Path, static_tree: StaticTree):
    static_tree.write("a.css", "a")
    static_tree.write("sub dir/ü.js", "b")
    first = collectstatic()
    assert "2 static files copied to" in first.stdout
    assert tree_files(static_root) == static_tree.files()

    # A fresh checkout touches every mtime; stock would copy all, md5s say nothing changed.
    for path in static_tree.root.rglob("*"):
        os.utime(path)
    static_tree.write("a.css", "changed")
    second = collectstatic(verbosity=2)

    assert "1 static file copied to" in second.stdout and "1 unmodified" in second.stdout
    assert "Skipping 'sub dir/ü.js' (not modified)" in second.stdout
    assert tree_files(static_root) == static_tree.files()


def test_caching_filesystem_strategy_looks_up_each_file_once(settings, static_root: Path, static_tree: StaticTree):
    settings.COLLECTFAST_STRATEGY = "tests.test_filesystem.CountingCachingStrategy"
    caches["default"].clear()
    static_tree.write("a.css", "a")
    static_tree.write("b.css", "b")
    CountingCachingStrategy.lookups = 0
    collectstatic()
    assert CountingCachingStrategy.lookups == 2
    collectstatic()  # the first run's copies invalidated their entries: look up again, then cache
    collectstatic()
    assert CountingCachingStrategy.lookups == 4
    assert tree_files(static_root) == static_tree.files()


def test_custom_strategy_from_collectfast_2_keeps_working(settings, static_root: Path, static_tree: StaticTree):
    settings.COLLECTFAST_STRATEGY = "tests.test_filesystem.RecordingStrategy"
    settings.COLLECTFAST_THREADS = 1
    static_tree.write("keep/a.css", "a")
    static_tree.write("new/b.css", "b")
    CALLS.clear()

    collectstatic()

    assert sorted(CALLS) == [
        ("decide", "keep/a.css"),
        ("decide", "new/b.css"),
        ("pre", ""),
        ("pre", ""),
        ("skip", "keep/a.css"),
    ]
    assert CALLS[0] == ("pre", "") and CALLS.index(("decide", "keep/a.css")) < CALLS.index(("skip", "keep/a.css"))
    assert tree_files(static_root) == {"new/b.css": b"b"}


def test_hash_strategy_subclass_from_collectfast_2(settings, static_root: Path, static_tree: StaticTree):
    settings.COLLECTFAST_STRATEGY = "tests.test_filesystem.OldHashStrategy"
    static_tree.write("a.css", "a")
    collectstatic()
    run = collectstatic()
    assert "0 static files copied to" in run.stdout and "1 unmodified" in run.stdout


def test_a_failing_copy_names_the_file_and_keeps_the_others(static_root: Path, static_tree: StaticTree):
    static_tree.write("ok.css", "ok")
    static_tree.write("blocked/x.css", "x")
    static_root.mkdir()
    (static_root / "blocked").write_text("a file where a folder should be")

    with pytest.raises(CommandError) as error:
        collectstatic()

    assert "could not upload 1 of 2 files" in str(error.value)
    assert "blocked/x.css:" in str(error.value)
    assert (static_root / "ok.css").read_text() == "ok"


def test_debug_adds_tracebacks(settings, static_root: Path, static_tree: StaticTree):
    settings.COLLECTFAST_DEBUG = True
    static_tree.write("blocked/x.css", "x")
    static_root.mkdir()
    (static_root / "blocked").write_text("not a folder")

    with pytest.raises(CommandError, match="Traceback"):
        collectstatic()


def test_disable_collectfast_on_a_local_destination(static_root: Path, static_tree: StaticTree):
    static_tree.write("a.css", "a")
    run = collectstatic("--disable-collectfast")
    assert run.stdout.strip() == f"1 static file copied to '{static_root}'."


def test_link_still_works_locally(static_root: Path, static_tree: StaticTree):
    static_tree.write("a.css", "a")
    collectstatic("--link")
    assert (static_root / "a.css").is_symlink()


class BreaksMidway(io.BytesIO):
    """A source file whose second read fails, as a disk error would."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell():
            raise OSError("read error")
        return super().read(4)


class FailingSource(FileSystemStorage):
    def _open(self, name: str, mode: str = "rb") -> File:
        return File(BreaksMidway(b"new content, never complete"), name)


def test_a_copy_that_fails_midway_leaves_no_temporary_file(tmp_path: Path) -> None:
    destination = FileSystemStorage(location=tmp_path / "root")
    destination.save("a.css", io.BytesIO(b"old"))
    source = FailingSource(location=tmp_path / "source")

    with pytest.raises(OSError, match="read error"):
        replace_file("a.css", "a.css", source, destination)

    assert os.listdir(tmp_path / "root") == ["a.css"]
    assert (tmp_path / "root" / "a.css").read_bytes() == b"old"


def describe(root: Path) -> dict[str, tuple[bool, bytes]]:
    """Each collected path: whether it is a symlink, and its bytes."""
    return {p.relative_to(root).as_posix(): (p.is_symlink(), p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def run_twice(settings: Any, root: Path, first: tuple[str, ...], second: tuple[str, ...], stock: bool) -> Run:
    settings.STATIC_ROOT = str(root)
    collectstatic(*first, disable_collectfast=stock)
    return collectstatic(*second, disable_collectfast=stock)


@pytest.mark.parametrize(
    ("first", "second", "links"),
    [(("--link",), (), False), ((), ("--link",), True)],
    ids=["link-then-copy", "copy-then-link"],
)
def test_switching_link_mode_leaves_what_stock_leaves(
    settings: Any, tmp_path: Path, static_tree: StaticTree, first: tuple[str, ...], second: tuple[str, ...], links: bool
) -> None:
    static_tree.write("a.css", "a")
    static_tree.write("sub/b.js", "b")

    stock = run_twice(settings, tmp_path / "stock", first, second, stock=True)
    ours = run_twice(settings, tmp_path / "ours", first, second, stock=False)

    assert describe(tmp_path / "ours") == describe(tmp_path / "stock")
    assert {link for link, _ in describe(tmp_path / "ours").values()} == {links}
    assert "2 static files" in stock.stdout and "2 static files" in ours.stdout


def test_the_caching_strategy_replaces_links_its_cache_knows_as_files(
    settings: Any, static_root: Path, static_tree: StaticTree
) -> None:
    settings.COLLECTFAST_STRATEGY = "collectfast.strategies.filesystem.CachingFileSystemStrategy"
    caches["default"].clear()
    static_tree.write("a.css", "a")
    collectstatic()
    collectstatic()  # caches the md5 of the copy
    collectstatic("--link")

    run = collectstatic()

    assert "1 static file copied" in run.stdout
    assert not (static_root / "a.css").is_symlink()
    assert (static_root / "a.css").read_text() == "a"


def test_the_file_system_backend_writes_a_small_object_only_over_the_version_it_read(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from collectfast.backends.base import WriteConflict
    from collectfast.backends.filesystem import FileSystemBackend

    backend = FileSystemBackend(FileSystemStorage(location=str(tmp_path)))
    assert backend.read_object("m/manifest.json") is None

    first = backend.write_object("m/manifest.json", b"one", replaces=None)
    with pytest.raises(WriteConflict):
        backend.write_object("m/manifest.json", b"again", replaces=None)  # create only if absent
    assert backend.read_object("m/manifest.json") == (b"one", first)

    second = backend.write_object("m/manifest.json", b"two", replaces=first)
    assert second != first
    with pytest.raises(WriteConflict):
        backend.write_object("m/manifest.json", b"stale", replaces=first)

    # Writers racing to replace the same version: exactly one wins, the others are told.
    def replace(n: int) -> str | None:
        try:
            return backend.write_object("m/manifest.json", f"writer {n}".encode(), replaces=second)
        except WriteConflict:
            return None

    with ThreadPoolExecutor(8) as executor:
        won = [token for token in executor.map(replace, range(16)) if token is not None]
    assert len(won) == 1
    data, token = backend.read_object("m/manifest.json") or (b"", "")
    assert token == won[0] and data.startswith(b"writer ")
    assert sorted(os.listdir(tmp_path / "m")) == ["manifest.json"]  # no temporary file left behind
