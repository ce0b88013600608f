"""UploadRecorder against the test S3 server: what it keeps of uploads that never complete."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any, ClassVar, cast

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError
from django.core.files.storage import Storage
from storages.backends.s3 import S3Storage

from collectfast.backends.s3 import UploadRecorder
from collectfast.strategies.manifest import S3ManifestStrategy
from tests.fixtures import Bucket, StaticTree, collectstatic, make_client, s3_storage
from tests.s3server import S3Server

KEY = "video/big.bin"
MIB = 1024 * 1024


class KeptStrategy(S3ManifestStrategy):
    """S3ManifestStrategy, kept for the test to look at its recorder; the server refuses the part after the first."""

    instances: ClassVar[list[KeptStrategy]] = []
    server: ClassVar[S3Server | None] = None

    def __init__(self, remote_storage: S3Storage) -> None:
        super().__init__(remote_storage)
        type(self).instances.append(self)
        self.refused = False

    def upload(self, path: str, prefixed_path: str, local_storage: Storage, remote_storage: Storage) -> Any:
        events = cast(S3Storage, remote_storage).connection.meta.client.meta.events
        events.register("after-call.s3.UploadPart", self.refuse_next_part, unique_id="test-refuse-next-part")
        return super().upload(path, prefixed_path, local_storage, remote_storage)

    def refuse_next_part(self, **kwargs: Any) -> None:
        if not self.refused and self.server is not None:
            self.refused = True
            self.server.add_fault("PUT", KEY, status=500, code="InternalError", times=1)


@pytest.fixture
def recorder(bucket: Bucket) -> UploadRecorder:
    recorder = UploadRecorder()
    recorder.watch(bucket.client)
    recorder.expect(KEY)
    return recorder


def start_upload(bucket: Bucket, recorder: UploadRecorder) -> str:
    """A multipart upload with one part sent, which the recorder holds."""
    upload_id: str = bucket.client.create_multipart_upload(Bucket=bucket.name, Key=KEY)["UploadId"]
    bucket.client.upload_part(Bucket=bucket.name, Key=KEY, UploadId=upload_id, PartNumber=1, Body=b"part")
    assert set(recorder._parts) == {upload_id}
    return upload_id


def complete(client: Any, bucket: Bucket, upload_id: str) -> None:
    etag = bucket.client.list_parts(Bucket=bucket.name, Key=KEY, UploadId=upload_id)["Parts"][0]["ETag"]
    client.complete_multipart_upload(
        Bucket=bucket.name,
        Key=KEY,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )


def test_an_aborted_upload_is_forgotten(bucket: Bucket, recorder: UploadRecorder) -> None:
    upload_id = start_upload(bucket, recorder)

    bucket.client.abort_multipart_upload(Bucket=bucket.name, Key=KEY, UploadId=upload_id)

    assert recorder._parts == {}


def test_an_upload_whose_completion_is_refused_is_forgotten(bucket: Bucket, recorder: UploadRecorder) -> None:
    upload_id = start_upload(bucket, recorder)
    bucket.server.add_fault("POST", KEY, status=500, code="InternalError", times=1)

    with pytest.raises(ClientError):
        complete(bucket.client, bucket, upload_id)

    assert recorder._parts == {} and recorder.pop(KEY) is None


def test_only_the_uploads_under_way_are_recorded(bucket: Bucket, recorder: UploadRecorder) -> None:
    # The client is shared with the manifest's writes, which are no upload of the run's.
    bucket.client.put_object(Bucket=bucket.name, Key="collectfast-manifest.json", Body=b"{}")
    bucket.client.put_object(Bucket=bucket.name, Key=KEY, Body=b"body")
    recorder.forget(KEY)
    bucket.client.put_object(Bucket=bucket.name, Key=KEY, Body=b"again")

    assert recorder._stored == {KEY: (hashlib.md5(b"body").hexdigest(), 4)}
    assert recorder.pop(KEY) == (hashlib.md5(b"body").hexdigest(), 4) and recorder.pop(KEY) is None


@pytest.fixture
def slow_server(bucket: Bucket) -> Iterator[Bucket]:
    yield bucket
    bucket.server.configure(delay_ms=0)


def test_an_upload_whose_completion_gets_no_answer_is_forgotten(slow_server: Bucket) -> None:
    bucket = slow_server
    client = make_client(bucket.server.endpoint_url, Config(read_timeout=0.2, retries={"total_max_attempts": 1}))
    recorder = UploadRecorder()
    recorder.watch(client)
    recorder.expect(KEY)
    upload_id = start_upload(Bucket(bucket.name, bucket.server, client), recorder)
    bucket.server.configure(delay_ms=1000)

    with pytest.raises(ReadTimeoutError):
        complete(client, bucket, upload_id)

    assert recorder._parts == {} and recorder.pop(KEY) is None


def test_a_deploy_whose_multipart_upload_failed_once_leaves_nothing_recorded(
    s3_settings: Any, bucket: Bucket, static_tree: StaticTree
) -> None:
    # One part at a time: the first is stored, the second refused, and s3transfer aborts the upload.
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=1)
    s3_settings.STORAGES = {**s3_settings.STORAGES, "staticfiles": s3_storage(bucket, transfer_config=config)}
    s3_settings.COLLECTFAST_STRATEGY = "tests.test_s3uploads.KeptStrategy"
    KeptStrategy.instances.clear()
    KeptStrategy.server = bucket.server
    big = os.urandom(12 * MIB)
    static_tree.write(KEY, big)

    collectstatic()  # collectfast sends the file again, whole

    assert bucket.client.get_object(Bucket=bucket.name, Key=KEY)["Body"].read() == big
    assert bucket.counts()["DELETE"] == 1  # the aborted upload
    (strategy,) = KeptStrategy.instances
    assert strategy.backend.recorder._parts == {} and strategy.backend.recorder._stored == {}
