"""Learn what S3 stored for each upload from the uploader's own responses, with no extra request."""

from __future__ import annotations

import threading
from typing import Any

from botocore.utils import determine_content_length

from collectfast.manifest import Stored

_CONTEXT_KEY = "collectfast_upload"


class UploadRecorder:
    """Record, per key, the ETag S3 answered to our PutObject / CompleteMultipartUpload and the bytes sent.

    s3transfer sends the requests of one upload from threads of its own, so
    requests are tied to their key through botocore's per-request context,
    never through the calling thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stored: dict[str, Stored] = {}
        self._parts: dict[str, dict[int, int]] = {}
        self._id = f"collectfast-upload-recorder-{id(self)}"

    def watch(self, client: Any) -> None:
        """Record the uploads ``client`` makes from now on; safe to call repeatedly."""
        events = client.meta.events
        for operation in ("PutObject", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"):
            event = f"provide-client-params.s3.{operation}"
            events.register(event, self._on_params, unique_id=f"{self._id}-params-{operation}")
        events.register("after-call.s3.PutObject", self._on_put, unique_id=f"{self._id}-put")
        events.register("after-call.s3.UploadPart", self._on_part, unique_id=f"{self._id}-part")
        events.register("after-call.s3.CompleteMultipartUpload", self._on_complete, unique_id=f"{self._id}-complete")
        # Uploads that end any other way are never completed: their parts would be kept forever.
        for event in (
            "after-call.s3.AbortMultipartUpload",
            "after-call-error.s3.AbortMultipartUpload",
            "after-call-error.s3.CompleteMultipartUpload",
        ):
            events.register(event, self._on_end, unique_id=f"{self._id}-{event}")

    def pop(self, key: str) -> Stored | None:
        """What the last successful upload of ``key`` stored, once."""
        with self._lock:
            return self._stored.pop(key, None)

    def _on_params(self, params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        # Read before botocore wraps the body (checksums, aws-chunked): its length is the object's.
        size = determine_content_length(params.get("Body")) if "Body" in params else None
        context[_CONTEXT_KEY] = (params.get("Key"), params.get("UploadId"), params.get("PartNumber"), size)

    def _on_put(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        key, _, _, size = context.get(_CONTEXT_KEY, (None, None, None, None))
        if http_response.status_code < 300 and key and size is not None and parsed.get("ETag"):
            with self._lock:
                self._stored[key] = Stored(parsed["ETag"].strip('"'), size)

    def _on_part(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        _, upload_id, number, size = context.get(_CONTEXT_KEY, (None, None, None, None))
        if http_response.status_code < 300 and upload_id and size is not None:
            with self._lock:
                # Keyed by part number: a retried part replaces, never adds to, the first attempt.
                self._parts.setdefault(upload_id, {})[number] = size

    def _on_end(self, context: dict[str, Any], **kwargs: Any) -> None:
        _, upload_id, _, _ = context.get(_CONTEXT_KEY, (None, None, None, None))
        with self._lock:
            self._parts.pop(upload_id, None)

    def _on_complete(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        key, upload_id, _, _ = context.get(_CONTEXT_KEY, (None, None, None, None))
        with self._lock:
            parts = self._parts.pop(upload_id, None)
            if http_response.status_code < 300 and key and parts and parsed.get("ETag"):
                self._stored[key] = Stored(parsed["ETag"].strip('"'), sum(parts.values()))
