"""Post-processing of remote hashing storages (``S3ManifestStaticStorage`` and the like) at collectfast speed.

Stock ``post_process`` asks the bucket about every hashed name, reads files back and saves
every hashed file, then deletes and rewrites ``staticfiles.json``, one request at a time.
Here the storage's own ``post_process`` runs on a staged copy (collectfast.staging), so the
hashing and rewriting happen locally and give the same names and bytes. Then, in order:
the originals, the staged files and last ``staticfiles.json`` go through the command's pool
and strategy, each batch only once the one before it is entirely in place.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from django.contrib.staticfiles.storage import HashedFilesMixin, ManifestFilesMixin
from django.contrib.staticfiles.utils import matches_patterns
from django.core.files.storage import Storage

from collectfast.backends import backend_class_for
from collectfast.object_parameters import hashed_names

if TYPE_CHECKING:
    from collectfast.deploy import Deploy, Task
    from collectfast.staging import StagedStorage

Found = Mapping[str, tuple[Storage, str]]
Result = tuple[str, "str | None", Any]


@runtime_checkable
class KnowsRemoteSizes(Protocol):
    """A strategy that can tell a remote file's size from what it already learned (None: unknown)."""

    def remote_size(self, prefixed_path: str) -> int | None: ...

    def stores_as_is(self, prefixed_path: str) -> bool:
        """Whether an upload to ``prefixed_path`` stores the local bytes unchanged (not gzipped)."""
        ...


def unwrap(storage: Storage) -> Storage:
    """The storage behind Django's lazy ``staticfiles_storage``."""
    wrapped = getattr(storage, "_wrapped", None)
    return wrapped if isinstance(wrapped, Storage) else storage


def can_stage(storage: Storage) -> bool:
    """Whether the post-processing of ``storage`` can run locally and be uploaded by collectfast.

    Any remote storage a backend serves (collectfast.backends): its uploads go through the strategy.
    """
    storage = unwrap(storage)
    if not (isinstance(storage, HashedFilesMixin) and backend_class_for(storage) is not None):
        return False
    # A manifest kept in another storage is written there the stock way.
    return not isinstance(storage, ManifestFilesMixin) or storage.manifest_storage is storage


def staged_post_process(deploy: Deploy, storage: Storage) -> Callable[..., Iterator[Result]] | None:
    """What the command runs instead of ``storage.post_process``, or None to run that after the uploads."""
    return StagedPostProcess(deploy, unwrap(storage)).post_process if can_stage(storage) else None


def content_addressed(storage: Storage, hashed_files: Mapping[str, str]) -> set[str]:
    """The hashed names that name their own content: Django's md5 of exactly the bytes stored there."""
    storage_class: Any = type(storage)
    if storage_class.file_hash is not HashedFilesMixin.file_hash:
        return set()
    if storage_class.hashed_name is not HashedFilesMixin.hashed_name:
        return set()
    return {name for original, name in hashed_files.items() if name != original}


class StagedPostProcess:
    """The ``post_process`` of one run: stage, then upload originals, staged files and the manifest."""

    def __init__(self, deploy: Deploy, storage: Storage) -> None:
        self.deploy = deploy
        self.storage = storage
        self.skipped: set[str] = set()
        self.overwritten: set[str] = set()
        self.in_place_if_sized: set[str] = set()

    def post_process(self, paths: Found, dry_run: bool = False, **options: Any) -> Iterator[Result]:
        with tempfile.TemporaryDirectory(prefix="collectfast-") as directory:
            results = self.run(paths, directory, dry_run=dry_run, **options)
        # Django's loop logs these, counts them and raises the first error.
        yield from results

    def run(self, paths: Found, directory: str, **options: Any) -> list[Result]:
        from collectfast.staging import stage

        staged = stage(self.storage, paths, directory)
        results: list[Result] = []
        with self.deploy.phase("post_process"):
            for result in staged.post_process(dict(paths), **options):
                results.append(result)
                if isinstance(result[2], Exception):
                    break
        if results and isinstance(results[-1][2], Exception):
            self.adopt(staged)
            return results  # nothing is uploaded: the bucket keeps its staticfiles.json
        names = staged.staged_names()
        manifest = staged.stored_name_of(staged.manifest_name) if isinstance(staged, ManifestFilesMixin) else None
        files = [name for name in names if name != manifest]
        self.deploy.learn_hashed_names(hashed_names(staged.hashed_files))
        self.deploy.drain(
            later_paths=names, after="No post-processed file was uploaded, and the old manifest stays live."
        )
        self.overwritten = set(files).intersection(self.deploy.copied)
        self.in_place_if_sized = content_addressed(self.storage, staged.hashed_files)
        self.upload(staged, files, "The manifest was not uploaded, so the old one stays live.")
        if manifest in names:
            self.upload(staged, [manifest], "Every file it names is in place; the old manifest stays live.")
        self.adopt(staged)
        return [self.as_stock(staged, result) for result in results]

    def upload(self, staged: StagedStorage, names: list[str], after: str) -> None:
        tasks: list[Task] = [(name, name, staged.staged_files) for name in names]
        self.deploy.run_batch(tasks, self.decide_and_upload, self.record, after=after, decide=self.decide)

    def decide(self, task: Task) -> bool | None:
        """On the main thread, as ``Deploy.decide_here``: True to upload, False to skip, None to ask a worker."""
        path, name, staged_files = task
        if name in self.overwritten:
            # Uploaded as an original in this run: what the strategy learned about it is stale.
            return True
        strategy = self.deploy.strategy
        if (
            name in self.in_place_if_sized
            and isinstance(strategy, KnowsRemoteSizes)
            # A gzipped object's size says nothing of the local bytes: let the strategy judge it.
            and strategy.stores_as_is(name)
            and strategy.remote_size(name) == staged_files.size(path)
        ):
            return False
        return self.deploy.decide_here(task)

    def decide_and_upload(self, task: Task) -> bool:
        """Runs in a worker, like ``Deploy.process_task``, for a file :meth:`decide` left undecided."""
        decision = self.decide(task)
        if decision is None:
            return self.deploy.process_task(task)
        return self.deploy.upload_task(task) if decision else False

    def record(self, task: Task, *, copied: bool) -> None:
        path, name, staged_files = task
        strategy = self.deploy.strategy
        if not copied:
            self.skipped.add(name)
            self.deploy.log(f"Skipping '{name}' (not modified)", 2)
            strategy.on_skip_hook(path, name, staged_files)
        elif self.deploy.dry_run:
            self.deploy.uploaded_later.append(name)
            self.deploy.log(f"Pretending to upload '{name}'", 1)
        else:
            self.deploy.uploaded_later.append(name)
            self.deploy.log(f"Uploading '{name}'", 2)
            strategy.post_copy_hook(path, name, staged_files)

    def as_stock(self, staged: StagedStorage, result: Result) -> Result:
        original, hashed_name, processed = result
        patterns = cast(Any, staged)._patterns
        if processed is True and hashed_name in self.skipped and not matches_patterns(original, patterns):
            # Stock saves a file it does not rewrite only when the bucket lacks its hashed name,
            # and otherwise reports "Skipped post-processing".
            return original, hashed_name, False
        return result

    def adopt(self, staged: StagedStorage) -> None:
        """Leave the storage's names as stock leaves them, for ``static()`` later in this process."""
        storage = cast(Any, self.storage)
        storage.hashed_files = staged.hashed_files
        if isinstance(staged, ManifestFilesMixin):
            storage.manifest_hash = staged.manifest_hash
