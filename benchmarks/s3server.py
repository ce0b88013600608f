"""The tests' S3 server (tests/s3server.py) with a listing that costs what a real S3's does: little.

moto answers each ListObjectsV2 page by copying, filtering and sorting every key of the bucket:
at 100,000 objects its CPU, not the client, sets the pace of a listing (about 100 pages of
O(N log N) each, on the two cores the contender also runs on). Here a page is a bisection into a
sorted list of the bucket's names, kept until the bucket's keys change. Same answers, same
pagination tokens; delimiters and moto's other bucket kinds go through moto's own code.

    python -m benchmarks.s3server --port 0 --delay-ms 20
"""

from __future__ import annotations

import bisect
from typing import Any

from tests import s3server
from tests.s3server import S3Server

_NAMES = "_bench_sorted_names"


def install() -> None:
    from moto.s3.models import FakeBucket, FakeDeleteMarker, S3Backend
    from moto.s3.utils import _VersionedKeyStore
    from moto.utilities.utils import md5_hash

    def invalidating(method: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            self.__dict__.pop(_NAMES, None)
            return method(self, *args, **kwargs)

        return wrapper

    for name in ("__setitem__", "__delitem__", "pop", "setlist", "clear", "update", "setdefault", "popitem"):
        setattr(_VersionedKeyStore, name, invalidating(getattr(_VersionedKeyStore, name)))

    original = S3Backend.list_objects_v2

    def list_objects_v2(
        self: Any,
        bucket: Any,
        prefix: str | None,
        delimiter: str | None,
        continuation_token: str | None,
        start_after: str | None,
        max_keys: int,
    ) -> Any:
        if delimiter or type(bucket) is not FakeBucket:
            return original(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys)
        keys = bucket.keys
        names = keys.__dict__.get(_NAMES)
        if names is None:
            names = keys.__dict__[_NAMES] = sorted(dict.keys(keys))
        start = bisect.bisect_left(names, prefix or "")
        after = self._pagination_tokens.get(continuation_token) if continuation_token else start_after
        if after:
            start = max(start, bisect.bisect_right(names, after))
        found: list[Any] = []
        truncated = False
        for name in names[start:]:
            if prefix and not name.startswith(prefix):
                break
            key = keys.get(name)
            if key is None or isinstance(key, FakeDeleteMarker):
                continue
            if len(found) >= max_keys:
                truncated = True
                break
            found.append(key)
        if max_keys == 0 or not truncated:
            return found if max_keys else [], False, None
        token = md5_hash(found[-1].name.encode("utf-8")).hexdigest()
        self._pagination_tokens[token] = found[-1].name
        return found, True, token

    S3Backend.list_objects_v2 = list_objects_v2


class BenchS3Server(S3Server):
    module = "benchmarks.s3server"


def main() -> None:
    s3server.main(prepare=install)


if __name__ == "__main__":
    main()
