"""Checksums of local files, in the forms remote storages report them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO

from django.core.files.storage import Storage

BLOCK_SIZE = 1 << 20


@dataclass(frozen=True)
class Fingerprint:
    """What a storage holds after an upload of some bytes."""

    md5: str
    size: int
    etag: str


def file_md5(storage: Storage, path: str) -> str:
    """md5 of a file's bytes, read in blocks so large files never sit in memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with storage.open(path, "rb") as handle:
        while block := handle.read(BLOCK_SIZE):
            digest.update(block)
    return digest.hexdigest()


def _read_part(stream: IO[bytes], size: int) -> bytes:
    # Raw streams (gzip wrappers) may return short reads before the end.
    chunks = []
    wanted = size
    while wanted:
        chunk = stream.read(min(wanted, BLOCK_SIZE))
        if not chunk:
            break
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


def stream_fingerprint(stream: IO[bytes], multipart_threshold: int, part_size: int) -> Fingerprint:
    """Fingerprint the bytes of ``stream`` as an S3 upload with these transfer settings stores them.

    A single PUT gets the md5 as its ETag; a multipart upload (size >= threshold)
    gets md5(concatenated part md5s) + "-<parts>".
    """
    whole = hashlib.md5(usedforsecurity=False)
    part_digests: list[bytes] = []
    size = 0
    while True:
        part = _read_part(stream, part_size)
        if not part:
            break
        whole.update(part)
        part_digests.append(hashlib.md5(part, usedforsecurity=False).digest())
        size += len(part)
    md5 = whole.hexdigest()
    if size < multipart_threshold:
        return Fingerprint(md5=md5, size=size, etag=md5)
    combined = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
    return Fingerprint(md5=md5, size=size, etag=f"{combined}-{len(part_digests)}")
