"""Serving through a CDN (issue 14): per-path object parameters, and invalidation after a deploy.

The parameters are read back from every object of the real S3 server (moto, over HTTP); the
invalidations go to the CloudFront API of the same moto process, which records each request's
paths: the tests read them back with ListInvalidations / GetInvalidation.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management.base import CommandError

from collectfast.cdn import CloudFrontInvalidator, Invalidator
from collectfast.checks import check_settings
from collectfast.object_parameters import HASHED, HASHED_IMMUTABLE, IMMUTABLE, SHORT
from tests.fixtures import ACCESS_KEY, REGION, SECRET_KEY, Bucket, StaticTree, collectstatic, s3_storage
from tests.test_manifest_storage import edit, manifest_storage, new_bucket, write_site

pytestmark = pytest.mark.moto_only("CloudFront is served by the moto process that serves S3")

MIB = 1024 * 1024
MANIFEST_STRATEGY = "collectfast.strategies.manifest.S3ManifestStrategy"


class CloudFront:
    """A distribution on the test server's CloudFront API, and what was asked of it."""

    def __init__(self, endpoint_url: str) -> None:
        import boto3

        self.endpoint_url = endpoint_url
        self.client = boto3.client(
            "cloudfront",
            endpoint_url=endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )
        origin = {
            "Id": "bucket",
            "DomainName": "bucket.s3.amazonaws.com",
            "S3OriginConfig": {"OriginAccessIdentity": ""},
        }
        behaviour = {
            "TargetOriginId": "bucket",
            "ViewerProtocolPolicy": "allow-all",
            "MinTTL": 0,
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            "TrustedSigners": {"Enabled": False, "Quantity": 0},
        }
        config = {
            "CallerReference": uuid.uuid4().hex,
            "Origins": {"Quantity": 1, "Items": [origin]},
            "DefaultCacheBehavior": behaviour,
            "Comment": "collectfast tests",
            "Enabled": True,
        }
        self.distribution_id = str(self.client.create_distribution(DistributionConfig=config)["Distribution"]["Id"])

    def setting(self, **options: Any) -> dict[str, Any]:
        return {"cloudfront": {"distribution_id": self.distribution_id, "endpoint_url": self.endpoint_url, **options}}

    def invalidations(self) -> list[dict[str, Any]]:
        """Every invalidation of the distribution, oldest first: id, paths and caller reference."""
        listed = self.client.list_invalidations(DistributionId=self.distribution_id)["InvalidationList"]
        found = []
        for item in listed.get("Items", []):
            batch = self.client.get_invalidation(DistributionId=self.distribution_id, Id=item["Id"])
            found.append(
                {"id": item["Id"], "created": item["CreateTime"], **batch["Invalidation"]["InvalidationBatch"]}
            )
        return sorted(found, key=lambda invalidation: invalidation["created"])

    def paths(self) -> list[list[str]]:
        return [sorted(invalidation["Paths"].get("Items", [])) for invalidation in self.invalidations()]


@pytest.fixture
def cloudfront(bucket: Bucket) -> CloudFront:
    distribution = CloudFront(bucket.server.endpoint_url)
    bucket.server.reset()  # the test counts its own requests only
    return distribution


def hashed_keys(bucket: Bucket, location: str = "") -> set[str]:
    """The hashed names in the bucket's staticfiles.json, as keys."""
    prefix = f"{location}/" if location else ""
    body = bucket.client.get_object(Bucket=bucket.name, Key=f"{prefix}staticfiles.json")["Body"].read()
    return {prefix + hashed for original, hashed in json.loads(body)["paths"].items() if hashed != original}


def heads(bucket: Bucket) -> dict[str, dict[str, Any]]:
    return {key: bucket.client.head_object(Bucket=bucket.name, Key=key) for key in bucket.list_keys()}


# Per-path object parameters


def test_the_preset_makes_hashed_objects_immutable_and_the_rest_short_and_the_bucket_stocks_otherwise(
    settings, bucket: Bucket, static_tree: StaticTree
):
    write_site(static_tree)
    # At the multipart threshold: sent by django-storages' own _save, in parts, as original and hashed copy.
    static_tree.write("data/big.bin", os.urandom(8 * MIB + 1))
    own = {"object_parameters": {"ContentDisposition": "inline", "Metadata": {"site": "test"}}}
    stock = new_bucket(bucket, "stock")
    settings.STORAGES = {**settings.STORAGES, "staticfiles": manifest_storage(stock, **own)}
    collectstatic("--disable-collectfast")
    settings.COLLECTFAST_OBJECT_PARAMETERS = "hashed-immutable"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": manifest_storage(bucket, **own)}
    bucket.server.reset()

    collectstatic()

    # The storage looks for an old staticfiles.json when built (HEAD); 11 originals, 11 hashed names and
    # staticfiles.json, the big file in 2 parts each time; one ListMultipartUploads after sending parts (GET).
    assert bucket.counts() == {"HEAD": 1, "LIST": 1, "PUT": 10 + 10 + 1 + 2 * 2, "POST": 2 * 2, "GET": 1}
    fast, reference = heads(bucket), heads(stock)
    assert sorted(fast) == sorted(reference)
    hashed = hashed_keys(bucket)
    assert len(hashed) == 11 and "data/big.bin" not in hashed
    for key, head in fast.items():
        assert head["CacheControl"] == (IMMUTABLE if key in hashed else SHORT), key
        assert "CacheControl" not in reference[key]
        # The storage's own parameters stay under the pattern's, and everything else is stock's.
        for field in ("ContentType", "ContentDisposition", "Metadata", "ContentLength"):
            assert head.get(field) == reference[key].get(field), (key, field)
    assert bucket.objects() == stock.objects()
    assert fast["data/big.bin"]["ETag"].endswith('-2"')

    # Nothing changed: the listing strategy proves every file unchanged, the parameters change nothing.
    bucket.server.reset()
    caches["default"].clear()
    collectstatic()
    assert bucket.counts() == {"LIST": 1}


def test_the_first_matching_pattern_wins_under_a_location(settings, bucket: Bucket, static_tree: StaticTree):
    static_tree.write("css/app.css", "body {}")
    static_tree.write("css/print.css", "@media print {}")
    static_tree.write("fonts/a.woff2", b"font")
    static_tree.write("robots.txt", "ok")
    settings.COLLECTFAST_OBJECT_PARAMETERS = [
        ("css/print.css", {"CacheControl": "no-store"}),
        ("css/*", {"CacheControl": "max-age=60"}),
        ("*.woff2", {"CacheControl": "max-age=600", "ContentType": "font/woff2"}),
    ]
    options = {"location": "site", "object_parameters": {"CacheControl": "max-age=1"}}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, **options)}

    collectstatic()

    found = {key: (head["CacheControl"], head["ContentType"]) for key, head in heads(bucket).items()}
    assert found == {
        "site/css/app.css": ("max-age=60", "text/css"),
        "site/css/print.css": ("no-store", "text/css"),
        "site/fonts/a.woff2": ("max-age=600", "font/woff2"),
        "site/robots.txt": ("max-age=1", "text/plain"),  # no pattern: the storage's own
    }


def test_changing_the_rules_reuploads_exactly_the_affected_files_with_the_deploy_manifest(
    settings, bucket: Bucket, static_tree: StaticTree
):
    settings.COLLECTFAST_STRATEGY = MANIFEST_STRATEGY
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket)}
    write_site(static_tree)
    collectstatic()
    settings.COLLECTFAST_OBJECT_PARAMETERS = [("css/*", {"CacheControl": "max-age=60"})]
    bucket.server.reset()

    collectstatic()

    css = [name for name in static_tree.files() if name.startswith("css/")]
    assert len(css) == 4
    # The manifest's options fingerprint changed for the css files only; then one manifest write.
    assert bucket.counts() == {"GET": 1, "LIST": 1, "PUT": len(css) + 1}
    caching = {key: head.get("CacheControl") for key, head in heads(bucket).items()}
    assert {key for key, value in caching.items() if value} == {*css, "collectfast-manifest.json"}  # no-cache
    bucket.server.reset()
    collectstatic()
    assert bucket.counts() == {"GET": 1, "LIST": 1}


def test_the_listing_strategy_cannot_see_a_change_of_rules(settings, bucket: Bucket, static_tree: StaticTree):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket)}
    static_tree.write("css/app.css", "body {}")
    collectstatic()
    settings.COLLECTFAST_OBJECT_PARAMETERS = "hashed-immutable"
    bucket.server.reset()
    caches["default"].clear()

    collectstatic()

    # As documented: a listing shows checksums, not headers.
    assert bucket.counts() == {"LIST": 1}
    assert "CacheControl" not in bucket.client.head_object(Bucket=bucket.name, Key="css/app.css")


def test_the_user_storage_is_not_changed(settings, bucket: Bucket, static_tree: StaticTree):
    from django.contrib.staticfiles.storage import staticfiles_storage

    settings.COLLECTFAST_OBJECT_PARAMETERS = "hashed-immutable"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket)}
    static_tree.write("a.css", "a")

    collectstatic()

    assert "get_object_parameters" not in vars(staticfiles_storage._wrapped)
    assert staticfiles_storage.get_object_parameters("a.css") == {}


# Invalidation


def manifest_site(settings, bucket: Bucket, tree: StaticTree, n_more: int) -> None:
    """The manifest test site under location 'static', and ``n_more`` plain files."""
    write_site(tree)
    for i in range(n_more):
        tree.write(f"lib/f{i:03}.js", f"var f{i} = {i};\n")
    settings.STORAGES = {**settings.STORAGES, "staticfiles": manifest_storage(bucket, location="static")}


def test_a_one_percent_change_invalidates_exactly_its_unhashed_paths_in_one_request(
    settings, bucket: Bucket, static_tree: StaticTree, cloudfront: CloudFront, tmp_path: Path
):
    manifest_site(settings, bucket, static_tree, 190)  # 200 originals
    settings.COLLECTFAST_INVALIDATE = cloudfront.setting()
    first = collectstatic()
    # Everything changed: more than wildcard_over (100) paths, so one wildcard of their common folder.
    assert cloudfront.paths() == [["/static/*"]]
    assert "Invalidated /static/* (201 changed paths) on CloudFront distribution" in first.stdout
    edit(static_tree, "with space/file name.txt", "changed")
    edit(static_tree, "lib/f007.js", "var f7 = 'changed';\n")
    bucket.server.reset()

    run = collectstatic("--report", str(tmp_path / "report.json"))

    # The two originals, their two new hashed names, staticfiles.json; one CreateInvalidation.
    assert bucket.counts() == {"LIST": 1, "PUT": 5, "POST": 1}
    invalidations = cloudfront.invalidations()
    assert len(invalidations) == 2
    latest = invalidations[-1]
    assert sorted(latest["Paths"]["Items"]) == [
        "/static/lib/f007.js",
        "/static/staticfiles.json",
        "/static/with%20space/file%20name.txt",
    ]
    assert latest["CallerReference"].startswith("collectfast-")
    assert f"Invalidated 3 paths on CloudFront distribution {cloudfront.distribution_id} " in run.stdout
    assert f"(invalidation {latest['id']})." in run.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["outcome"] == "succeeded"
    assert report["invalidation"] == {
        "provider": "cloudfront",
        "target": cloudfront.distribution_id,
        "status": "created",
        "changed": 3,
        "paths": report["invalidation"]["paths"],
        "wildcard": False,
        "ids": [latest["id"]],
        "requests": 1,
        "error": None,
    }
    assert sorted(report["invalidation"]["paths"]) == sorted(latest["Paths"]["Items"])

    bucket.server.reset()
    caches["default"].clear()
    unchanged = collectstatic()

    assert bucket.counts() == {"LIST": 1}
    assert len(cloudfront.invalidations()) == 2
    assert "Nothing to invalidate on CloudFront distribution" in unchanged.stdout


def test_a_dry_run_prints_what_it_would_invalidate_and_sends_nothing(
    settings, bucket: Bucket, static_tree: StaticTree, cloudfront: CloudFront
):
    manifest_site(settings, bucket, static_tree, 0)
    collectstatic()
    settings.COLLECTFAST_INVALIDATE = cloudfront.setting()
    edit(static_tree, "css/base/reset.css", "html { margin: 1px }\n")
    bucket.server.reset()

    run = collectstatic("--dry-run")

    assert bucket.counts() == {"LIST": 1}
    assert cloudfront.invalidations() == []
    # A dry run does not post-process (as stock): it names the changed originals, not staticfiles.json.
    assert "Pretending to invalidate '/static/css/base/reset.css'" in run.stdout
    assert run.stdout.count("Pretending to invalidate") == 1
    assert "Would invalidate 1 path on CloudFront distribution" in run.stdout


def test_a_failed_invalidation_fails_the_command_after_the_upload(
    settings, bucket: Bucket, static_tree: StaticTree, cloudfront: CloudFront, tmp_path: Path
):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, location="static")}
    settings.COLLECTFAST_INVALIDATE = {**cloudfront.setting(distribution_id="ENOSUCHDIST")}
    static_tree.write("css/app.css", "body {}")

    with pytest.raises(CommandError) as raised:
        collectstatic("--report", str(tmp_path / "report.json"))

    message = str(raised.value)
    assert message.startswith("The upload is complete: every file is in place.")
    assert "Then invalidating 1 path on CloudFront distribution ENOSUCHDIST failed: NoSuchDistribution" in message
    assert "aws cloudfront create-invalidation --distribution-id ENOSUCHDIST --paths '/static/css/app.css'" in message
    # One PUT, one CreateInvalidation: a missing distribution is not retried.
    assert bucket.counts() == {"LIST": 1, "PUT": 1, "POST": 1}
    assert bucket.list_keys() == ["static/css/app.css"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["outcome"] == "succeeded"
    assert report["invalidation"]["status"] == "failed"
    assert report["invalidation"]["error"].startswith("NoSuchDistribution")
    assert report["invalidation"]["ids"] == []


def test_a_throttled_invalidation_is_retried(settings, bucket: Bucket, static_tree: StaticTree, cloudfront: CloudFront):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket)}
    settings.COLLECTFAST_INVALIDATE = cloudfront.setting(path_prefix="/assets")
    static_tree.write("a b/ü~.css", "a")
    bucket.server.add_fault("POST", "/invalidation", status=503, code="ServiceUnavailable", times=1)

    collectstatic()

    assert bucket.counts() == {"LIST": 1, "PUT": 1, "POST": 2}
    assert cloudfront.paths() == [["/assets/a%20b/%C3%BC~.css"]]


def test_without_a_manifest_storage_every_uploaded_file_is_unhashed(
    settings, bucket: Bucket, static_tree: StaticTree, cloudfront: CloudFront
):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket, location="static")}
    settings.COLLECTFAST_INVALIDATE = cloudfront.setting(origin_path="/static", wildcard_over=2)
    for name in ("admin/css/base.css", "admin/js/core.js", "app/app.js"):
        static_tree.write(name, name)
    collectstatic()
    static_tree.write("admin/css/base.css", "changed")
    static_tree.write("admin/js/core.js", "changed")
    caches["default"].clear()

    collectstatic()

    # The origin path is the location: the CDN serves static/admin/css/base.css at /admin/css/base.css.
    assert cloudfront.paths() == [["/*"], ["/admin/css/base.css", "/admin/js/core.js"]]


# The pieces, without a server


class Recording(Invalidator):
    key = "recording"
    label = "test CDN"
    target_option = "name"
    max_paths_per_request = 2
    options_spec = {**Invalidator.options_spec, "name": ((str,), "t"), "fail_at": ((int,), 99)}

    def __init__(self, options: Any, storage: Any) -> None:
        super().__init__(options, storage)
        self.sent: list[list[str]] = []

    def send(self, paths: list[str], reference: str) -> str:
        if len(self.sent) == self.options["fail_at"]:
            raise RuntimeError("refused")
        self.sent.append(paths)
        return f"id{len(self.sent)}"


class Located:
    location = "static/"


def test_paths_are_batched_within_the_cdn_limit_and_a_failure_keeps_what_was_created():
    names = [f"f{i}.css" for i in range(5)]
    cdn = Recording({"wildcard_over": 10}, Located())
    result = cdn.invalidate(names)
    assert cdn.sent == [["/static/f0.css", "/static/f1.css"], ["/static/f2.css", "/static/f3.css"], ["/static/f4.css"]]
    assert (result.status, result.ids, result.requests) == ("created", ["id1", "id2", "id3"], 3)

    failing = Recording({"wildcard_over": 10, "fail_at": 1}, Located())
    result = failing.invalidate(names)
    assert (result.status, result.ids, result.error) == ("failed", ["id1"], "RuntimeError: refused")
    assert "Already created: id1" in failing.failure_message(result)


def test_a_wildcard_covers_the_common_folder_of_the_paths():
    cdn = Recording({"wildcard_over": 1}, Located())
    assert cdn.plan(["admin/css/a.css", "admin/css/b/c.css"]) == (["/static/admin/css/*"], True)
    assert cdn.plan(["admin/a", "admin/a/b.css"]) == (["/static/admin/*"], True)
    assert cdn.plan(["a.css"]) == (["/static/a.css"], False)
    assert cdn.path("x*y?.css") == "/static/x%2Ay%3F.css"


def test_malformed_settings_are_reported_by_the_checks(settings, bucket: Bucket):
    settings.STORAGES = {**settings.STORAGES, "staticfiles": s3_storage(bucket)}
    cases = [
        ("COLLECTFAST_OBJECT_PARAMETERS", "immutable", "names no preset: 'immutable'"),
        ("COLLECTFAST_OBJECT_PARAMETERS", [("*.css", "max-age=1")], "item 0: the parameters must be a dict"),
        ("COLLECTFAST_OBJECT_PARAMETERS", [(HASHED,)], "item 0 must be a (pattern, parameters) pair"),
        ("COLLECTFAST_INVALIDATE", {"cloudfront": {}}, "['cloudfront'] needs the option 'distribution_id'"),
        ("COLLECTFAST_INVALIDATE", {"fastly": {}}, "names no CDN: 'fastly'"),
        ("COLLECTFAST_INVALIDATE", {"cloudfront": {"distribution_id": "E1", "wildcard_over": 5000}}, "from 0 to 3000"),
        ("COLLECTFAST_INVALIDATE", {"cloudfront": {"distribution_id": "E1", "path_prefix": "a"}}, "start with '/'"),
        ("COLLECTFAST_INVALIDATE", {"cloudfront": {"distribution_id": "E1", "typo": 1}}, "unknown options 'typo'"),
    ]
    for name, value, words in cases:
        setattr(settings, name, value)
        messages = check_settings()
        assert [message.id for message in messages] == ["collectfast.E002"], (name, value)
        assert name in messages[0].msg and words in messages[0].msg, messages[0].msg
        delattr(settings, name)
    settings.COLLECTFAST_OBJECT_PARAMETERS = list(HASHED_IMMUTABLE)
    settings.COLLECTFAST_INVALIDATE = {"collectfast.cdn.CloudFrontInvalidator": {"distribution_id": "E1"}}
    assert check_settings() == []


def test_object_parameters_with_a_storage_that_does_not_apply_them_warn(settings):
    settings.COLLECTFAST_OBJECT_PARAMETERS = "hashed-immutable"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    assert [message.id for message in check_settings()] == ["collectfast.W009"]


def test_cloudfront_credentials_are_the_storages(settings, bucket: Bucket):
    from storages.backends.s3 import S3Storage

    storage = S3Storage(**s3_storage(bucket)["OPTIONS"])
    invalidator = CloudFrontInvalidator({"distribution_id": "E1"}, storage)
    credentials = invalidator.client()._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == (ACCESS_KEY, SECRET_KEY)
