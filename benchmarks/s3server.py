"""The tests' S3 server (tests/s3server.py) with a listing that costs what a real S3's does: little.

moto answers each ListObjectsV2 page by copying, filtering and sorting every key of the bucket:
at 100,000 objects its CPU, not the client, sets the pace of a listing (about 100 pages of
O(N log N) each, on the two cores the contender also runs on). Here a page is a bisection into a
sorted list of the bucket's names, kept until the bucket's keys change. Same answers, same
pagination tokens; delimiters and moto's other bucket kinds go through moto's own code.

Rendering a page of 1,000 keys also cost moto about 0.7 s of CPU (its generic serializer parses
and formats every key's timestamp again): with ranges listed at once, the server's CPU, not the
latency under test, set the pace. A plain page (no delimiter, encoding or owner) is rendered here
from each object's fragment, made once; tests/test_bench_server.py checks it byte for byte against moto's.

    python -m benchmarks.s3server --port 0 --delay-ms 20
"""

from __future__ import annotations

import bisect
import urllib.parse
from typing import Any
from xml.sax.saxutils import escape

from tests import s3server
from tests.s3server import S3Server

_NAMES = "_bench_sorted_names"
_FRAGMENT = "_bench_fragment"
#: The query of a page rendered here (moto adds the last two); any other parameter goes to moto.
_PLAIN_PAGE = {
    *("list-type", "prefix", "max-keys", "continuation-token", "start-after", "encoding-type"),
    *("BucketName", "Action"),
}
#: Marks a page rendered here, for the test that compares it with moto's.
RENDERED_HERE = "x-collectfast-bench-page"


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
    install_plain_pages()


def install_plain_pages() -> None:
    from moto import settings as moto_settings
    from moto.s3.exceptions import InvalidContinuationToken
    from moto.s3.models import FakeBucket, FakeKey
    from moto.s3.responses import S3Response

    original = S3Response.list_objects_v2

    def fragment(key: Any, encoding: str | None) -> str:
        # A key object is replaced, never changed, when its object is overwritten: its fragment stays true.
        cached: dict[str | None, str] = key.__dict__.setdefault(_FRAGMENT, {})
        if encoding not in cached:
            algorithm = key.checksum_algorithm
            checksum = f"<ChecksumAlgorithm>{algorithm}</ChecksumAlgorithm>" if algorithm else ""
            cached[encoding] = (
                f"<Contents><Key>{escape(key.safe_name(encoding))}</Key>"
                f"<LastModified>{key.last_modified_ISO8601}</LastModified>"
                f"<ETag>{escape(key.etag)}</ETag>{checksum}<Size>{key.size}</Size>"
                f"<StorageClass>{key.storage_class}</StorageClass></Contents>"
            )
        return cached[encoding]

    def list_objects_v2(self: Any) -> Any:
        query = self.querystring
        bucket = self.backend.get_bucket(self.bucket_name)
        if not set(query) <= _PLAIN_PAGE or type(bucket) is not FakeBucket:
            return original(self)
        token = query.get("continuation-token", [None])[0]
        if token == "":
            raise InvalidContinuationToken()
        prefix = self._get_querystring(self.request, self.uri).get("prefix", [None])[0]
        if isinstance(prefix, bytes):
            prefix = prefix.decode("utf-8")
        max_keys = int(query.get("max-keys", [moto_settings.get_s3_default_max_keys()])[0])
        start_after = query.get("start-after", [None])[0]
        encoding = query.get("encoding-type", [None])[0]
        keys, truncated, next_token = self.backend.list_objects_v2(
            bucket=bucket,
            prefix=prefix,
            delimiter=None,
            continuation_token=token,
            start_after=start_after,
            max_keys=max_keys,
        )
        keys = [key for key in keys if isinstance(key, FakeKey)]
        shown_prefix = (urllib.parse.quote(prefix) if prefix else "") if encoding == "url" else prefix
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
            *(fragment(key, encoding) for key in keys),
            f"<Name>{escape(bucket.name)}</Name>",
            f"<Prefix>{escape(shown_prefix)}</Prefix>" if shown_prefix else "<Prefix/>",
            f"<MaxKeys>{max_keys}</MaxKeys>",
            f"<EncodingType>{escape(encoding)}</EncodingType>" if encoding else "",
            f"<KeyCount>{len(keys)}</KeyCount>",
            f"<NextContinuationToken>{next_token}</NextContinuationToken>" if next_token else "",
            f"<StartAfter>{escape(start_after)}</StartAfter>" if start_after and not token else "",
            "</ListBucketResult>",
        ]
        self.data["Action"] = "ListObjectsV2"
        headers = {"Content-Type": "application/xml", **self.response_headers, RENDERED_HERE: "plain"}
        return 200, headers, "".join(parts).encode()

    S3Response.list_objects_v2 = list_objects_v2


class BenchS3Server(S3Server):
    module = "benchmarks.s3server"


def main() -> None:
    s3server.main(prepare=install)


if __name__ == "__main__":
    main()
