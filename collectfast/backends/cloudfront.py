"""Amazon CloudFront, the CDN in front of S3: the one request collectfast sends it (CreateInvalidation)."""

from __future__ import annotations

from typing import Any

import boto3

from collectfast.backends.s3 import deploy_config


def client(storage: Any, endpoint_url: str | None) -> Any:
    """A CloudFront client with the S3 storage's credentials when it has them, else boto3's usual chain."""
    create_session = getattr(storage, "_create_session", None)
    session = create_session() if callable(create_session) else boto3.session.Session()
    # collectfast's timeouts and retries
    return session.client("cloudfront", region_name="us-east-1", endpoint_url=endpoint_url, config=deploy_config(None))


def create_invalidation(cloudfront: Any, distribution_id: str, paths: list[str], reference: str) -> str:
    """Invalidate ``paths`` in one request; the invalidation's id."""
    response = cloudfront.create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={"Paths": {"Quantity": len(paths), "Items": paths}, "CallerReference": reference},
    )
    return str(response["Invalidation"]["Id"])
