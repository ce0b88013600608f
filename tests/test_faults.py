"""Faults between the real client and the real S3 server (tests/faultproxy.py), and how a deploy survives them.

Every case ends in :func:`assert_repaired`: the exit and its message, the bucket
against the local tree (for what the run says it uploaded), every manifest entry
against the listing and the bytes, no multipart upload left open, and a next run
without faults that repairs everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from django.core.management import call_command
from django.core.management.base import CommandError

from collectfast.manifest import NewerManifestError, loads
from tests.faultproxy import (
    Delay,
    Disappear,
    DropRequest,
    DropResponse,
    FaultProxy,
    Hang,
    LogEntry,
    Respond,
    Rule,
)
from tests.fixtures import Bucket, StaticTree, s3_storage
from tests.s3server import S3Server

BOTO3 = "collectfast.strategies.boto3.Boto3Strategy"
MANIFEST = "collectfast.strategies.manifest.S3ManifestStrategy"
MANIFEST_KEY = "collectfast-manifest.json"
ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
BIG = "big/blob.bin"  # 9 MiB: two parts of a multipart upload
CLOSING = re.compile(
    r"^(?:Uploaded (?P<uploaded>\d+) of (?P<queued>\d+) files; |No file was uploaded: of (?P<queued0>\d+) files )"
    r"(?P<unchanged>\d+) already in place, (?P<failed>\d+) failed, (?P<not_tried>\d+) not tried\.$"
)
# No botocore retries: collectfast's own retries (COLLECTFAST_RETRIES) are what is tested.
NO_RETRIES = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=20)

_BIG_BYTES = random.Random(9).randbytes(9 * MIB)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def files(tree: StaticTree, *, version: str = "v1", big: bool = False, n: int = 4) -> None:
    """A small tree: CSS, JS, a binary, some text files; optionally the 9 MiB file."""
    tree.write("css/app.css", f"body {{ color: red }} /* {version} */\n" * 20)
    tree.write("js/app.js", f"console.log('{version}');\n" * 30)
    tree.write("img/logo.png", random.Random(version).randbytes(3000))
    for i in range(n):
        tree.write(f"txt/{i:02}.txt", f"text {i} {version}\n")
    if big:
        tree.write(BIG, _BIG_BYTES if version == "v1" else _BIG_BYTES[:-7] + version.encode()[:7].ljust(7, b"."))


@dataclass
class Outcome:
    stdout: str
    stderr: str
    error: str | None
    claimed: list[str] = field(default_factory=list)  # the files the run says it uploaded
    killed: bool = False
    exit_after: float = 0.0  # seconds from the signal to the process's end


@dataclass
class Site:
    bucket: Bucket
    tree: StaticTree
    proxy: FaultProxy
    settings: Any
    strategy: str
    cache: Path

    @property
    def manifest(self) -> bool:
        return self.strategy == MANIFEST

    def configure(self, client_config: Config = NO_RETRIES, endpoint: str | None = None, **settings: Any) -> None:
        options = {"endpoint_url": endpoint or self.proxy.endpoint_url, "client_config": client_config}
        self.settings.STORAGES = {**self.settings.STORAGES, "staticfiles": s3_storage(self.bucket, **options)}
        for name, value in settings.items():
            setattr(self.settings, name, value)

    def run(self, *args: str) -> Outcome:
        stdout, stderr = StringIO(), StringIO()
        error = None
        try:
            call_command("collectstatic", *args, interactive=False, verbosity=2, stdout=stdout, stderr=stderr)
        except CommandError as raised:
            error = str(raised)
        out = stdout.getvalue()
        claimed = [
            Path(line.split("'")[1]).relative_to(self.tree.root).as_posix()
            for line in out.splitlines()
            if line.startswith("Copying '")
        ]
        return Outcome(out, stderr.getvalue(), error, claimed)

    def deploy_command(self, endpoint: str, *statics: Path, threads: int = 2, extra: Sequence[str] = ()) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.deploy_process",
            *("--endpoint", endpoint, "--bucket", self.bucket.name, "--threads", str(threads)),
            *(arg for static in statics or (self.tree.root,) for arg in ("--static", str(static))),
            *("--strategy", self.strategy, "--cache", str(self.cache)),
            *extra,
        ]

    def objects(self) -> dict[str, bytes]:
        return {key: data for key, data in self.bucket.objects().items() if key != MANIFEST_KEY}


def listing(bucket: Bucket) -> dict[str, tuple[str, int]]:
    pages = bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name)
    return {obj["Key"]: (obj["ETag"].strip('"'), obj["Size"]) for page in pages for obj in page.get("Contents", ())}


def open_uploads(bucket: Bucket) -> list[str]:
    uploads = bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", [])
    return sorted(upload["Key"] for upload in uploads)


def check_manifest(site: Site, *, stale_ok: Sequence[str] = (), complete: bool = False) -> None:
    """Every entry describes the object the bucket holds (listing and bytes); ``complete``: one per local file."""
    raw = site.bucket.objects().get(MANIFEST_KEY)
    if raw is None:
        assert not complete, "no manifest after a clean run"
        return
    manifest = loads(raw)
    listed = listing(site.bucket)
    bad = []
    for name, entry in manifest.entries.items():
        stored = site.bucket.client.get_object(Bucket=site.bucket.name, Key=name)["Body"].read()
        if listed.get(name) != (entry.etag, entry.size) or (md5(stored), len(stored)) != (entry.md5, entry.size):
            bad.append(name)
    assert set(bad) <= set(stale_ok), f"manifest entries that do not describe the bucket: {sorted(bad)}"
    if complete:
        assert set(site.tree.files()) <= set(manifest.entries), "a clean run left files out of the manifest"


def check_failure_message(message: str, claimed: Sequence[str]) -> None:
    """The closing sentence, when the message has one, agrees with the run's own log."""
    last = message.splitlines()[-1]
    match = CLOSING.match(last)
    if match is None:
        return
    uploaded = int(match["uploaded"] or 0)
    queued = int(match["queued"] or match["queued0"])
    assert uploaded == len(claimed), f"{last!r} but the run logged {len(claimed)} uploads"
    assert uploaded + int(match["unchanged"]) + int(match["failed"]) + int(match["not_tried"]) == queued


def assert_repaired(
    site: Site,
    outcome: Outcome,
    *,
    error: str | None = None,
    named: Sequence[str] = (),
    stale_ok: Sequence[str] = (),
    newer_manifest: bytes | None = None,
    run_args: Sequence[str] = (),
) -> None:
    """The checks every case ends with; then a run without faults must repair everything."""
    # 1. The exit and the message.
    if error is None:
        assert outcome.error is None, f"the run failed: {outcome.error}"
        assert not outcome.killed
        assert re.search(r"\d+ static files? copied", outcome.stdout), outcome.stdout
    elif outcome.killed:
        assert re.search(error, outcome.stderr), outcome.stderr
    else:
        assert outcome.error is not None, "the run succeeded"
        assert re.search(error, outcome.error), outcome.error
        for name in named:
            assert name in outcome.error, f"{name} is not named in: {outcome.error}"
        check_failure_message(outcome.error, outcome.claimed)
    # 2. What the run says it uploaded is in the bucket, byte for byte.
    local, remote = site.tree.files(), site.objects()
    for name in outcome.claimed:
        assert remote.get(name) == local[name], f"{name} is said to be uploaded, but the bucket holds other bytes"
    # 3. The manifest describes the bucket.
    if site.manifest and newer_manifest is None:
        check_manifest(site, stale_ok=stale_ok)
    # 4. No multipart upload left open (a SIGKILL cannot clean up: the next run is checked below).
    if not (outcome.killed and "SIGKILL" in outcome.stderr):
        assert open_uploads(site.bucket) == [], "the run left multipart uploads open"

    # 5. A next run without faults repairs everything.
    site.proxy.reset()
    repair = site.run(*run_args)
    assert repair.error is None, f"the repair run failed: {repair.error}"
    assert site.objects() == site.tree.files()
    if newer_manifest is not None:
        assert site.bucket.objects()[MANIFEST_KEY] == newer_manifest, "a newer manifest was changed"
    elif site.manifest:
        check_manifest(site, complete=True)
    assert open_uploads(site.bucket) == [], "multipart uploads are still open after the repair run"
    # 6. And the run after that has nothing left to do.
    again = site.run()
    assert again.error is None, again.error
    if newer_manifest is None:
        assert again.claimed == [], f"a run after the repair uploaded {again.claimed}"


# Fixtures.


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    proxy = FaultProxy(s3_server.endpoint_url, seed=11)
    yield proxy
    proxy.stop()


@pytest.fixture(params=[BOTO3, MANIFEST], ids=["boto3", "manifest"])
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def site(
    settings: Any, bucket: Bucket, static_tree: StaticTree, proxy: FaultProxy, strategy: str, tmp_path: Path
) -> Site:
    cache = tmp_path / "cache"
    # One cache shared by every deploy of the test, in-process or not, as a Redis would be.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(cache),
            "TIMEOUT": None,
        }
    }
    settings.COLLECTFAST_STRATEGY = strategy
    settings.COLLECTFAST_THREADS = 4
    site = Site(bucket, static_tree, proxy, settings, strategy, cache)
    site.configure()
    return site


def fired(proxy: FaultProxy) -> list[LogEntry]:
    return proxy.injected()


# Transient errors, persistent errors.


@pytest.mark.parametrize(
    ("strategy", "layer"),
    [(BOTO3, "collectfast-retries"), (MANIFEST, "botocore-retries")],
    ids=["boto3-collectfast-retries", "manifest-botocore-retries"],
)
def test_transient_5xx_at_ten_percent_is_retried_and_the_run_succeeds(site: Site, layer: str) -> None:
    files(site.tree, n=12, big=True)
    if layer == "botocore-retries":
        # Every kind of request fails now and then; botocore's standard retries absorb it, as in production.
        site.configure(Config(retries={"mode": "standard", "total_max_attempts": 4}, read_timeout=20))
        site.proxy.add(
            Rule(Respond(503, "SlowDown"), fraction=0.05),
            Rule(Respond(500, "InternalError"), fraction=0.05),
        )
    else:
        # Only uploads fail now and then; botocore does not retry, collectfast does.
        site.proxy.add(
            Rule(Respond(503, "SlowDown"), method="PUT", fraction=0.05),
            Rule(Respond(500, "InternalError"), method="PUT", fraction=0.05),
        )

    outcome = site.run()

    assert fired(site.proxy), "no fault was injected: pick another seed"
    assert_repaired(site, outcome)


def test_a_key_that_always_fails_is_named_and_the_others_go_up(site: Site) -> None:
    files(site.tree)
    site.proxy.add(Rule(Respond(500, "InternalError"), method="PUT", key_contains="js/app.js"))

    outcome = site.run()

    assert len(fired(site.proxy)) == 3  # the first attempt and COLLECTFAST_RETRIES = 2 more
    assert_repaired(site, outcome, error=r"^collectfast could not upload 1 of 7 files:", named=["js/app.js"])
    assert set(outcome.claimed) == set(site.tree.files()) - {"js/app.js"}


def test_403_on_every_put_stops_the_run_and_reads_still_work(site: Site) -> None:
    files(site.tree)
    site.proxy.add(Rule(Respond(403, "AccessDenied"), method="PUT"))

    outcome = site.run()

    assert_repaired(site, outcome, error=r"^collectfast stopped: .*was refused \(AccessDenied\)")
    assert outcome.claimed == []


# Dropped connections.

DROPS = {
    # name: (rule, the big file or not); each test gets copies, as rules count what they matched
    "mid-request-single": (Rule(DropRequest(0.5), method="PUT", key_contains="img/logo.png", times=1), False),
    "mid-response-single": (Rule(DropResponse(0), method="PUT", key_contains="img/logo.png", times=1), False),
    "mid-response-headers-single": (Rule(DropResponse(20), method="PUT", key_contains="css/", times=1), False),
    "mid-request-part": (
        Rule(DropRequest(0.3), method="PUT", key_contains=BIG, query_contains="partNumber=2", times=1),
        True,
    ),
    "mid-response-part": (
        Rule(DropResponse(0), method="PUT", key_contains=BIG, query_contains="partNumber=1", times=1),
        True,
    ),
    "mid-response-complete": (
        Rule(DropResponse(0), method="POST", key_contains=BIG, query_contains="uploadId=", times=1),
        True,
    ),
}


DROP_CASES = [(MANIFEST, case) for case in DROPS] + [(BOTO3, "mid-request-single"), (BOTO3, "mid-response-complete")]


@pytest.mark.parametrize(
    ("strategy", "case"), DROP_CASES, ids=[f"{'manifest' if s == MANIFEST else 'boto3'}-{c}" for s, c in DROP_CASES]
)
def test_a_dropped_connection_is_retried(site: Site, case: str) -> None:
    rule, big = DROPS[case]
    files(site.tree, big=big)
    site.proxy.add(dataclasses.replace(rule))

    outcome = site.run()

    assert len(fired(site.proxy)) == 1
    assert_repaired(site, outcome)


@pytest.mark.parametrize(("strategy", "case"), [(BOTO3, "single"), (MANIFEST, "part")], ids=["boto3", "manifest"])
def test_a_connection_dropped_on_every_attempt_names_the_file(site: Site, case: str) -> None:
    files(site.tree, big=case == "part")
    name = "img/logo.png" if case == "single" else BIG
    site.proxy.add(Rule(DropRequest(0.5), method="PUT", key_contains=name))

    outcome = site.run()

    assert_repaired(site, outcome, error=r"^collectfast could not upload 1 of \d+ files:", named=[name])


def test_the_endpoint_disappearing_mid_deploy_stops_the_run(site: Site) -> None:
    files(site.tree, n=16)
    # The first rule that fires wins: Disappear counts every PUT, Delay slows the others down.
    site.proxy.add(Rule(Disappear(), method="PUT", nth=5), Rule(Delay(0.05), method="PUT"))
    site.settings.COLLECTFAST_THREADS = 2

    outcome = site.run()

    assert_repaired(site, outcome, error=r"^collectfast stopped: .*could not be reached")
    assert 0 < len(outcome.claimed) < 16


# A hung request, with a short client read timeout.


@pytest.mark.parametrize("strategy", [MANIFEST], ids=["manifest"])
def test_a_request_hung_once_is_retried_by_botocore(site: Site) -> None:
    files(site.tree)
    # Read timeouts are botocore's to retry (collectfast does not retry them again).
    site.configure(Config(read_timeout=2, connect_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}))
    site.proxy.add(Rule(Hang(60), method="PUT", key_contains="js/app.js", times=1))

    started = time.monotonic()
    outcome = site.run()

    assert time.monotonic() - started < 30  # the read timeout, not the 60 s hold
    assert len(fired(site.proxy)) == 1
    assert_repaired(site, outcome)


@pytest.mark.parametrize("strategy", [BOTO3], ids=["boto3"])
def test_a_request_that_always_hangs_names_the_file_after_the_read_timeout(site: Site) -> None:
    files(site.tree)
    site.configure(Config(read_timeout=2, connect_timeout=2, retries={"total_max_attempts": 1}))
    site.proxy.add(Rule(Hang(60), method="PUT", key_contains="js/app.js"))

    started = time.monotonic()
    outcome = site.run()

    assert time.monotonic() - started < 30  # the read timeout, not the 60 s hold
    assert_repaired(site, outcome, error="^collectfast could not upload 1 of 7 files:", named=["js/app.js"])
    assert "ReadTimeoutError" in (outcome.error or "")


# The deploy process interrupted or killed mid-upload.

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def run_and_signal(site: Site, signame: str, rule: Rule, *, threads: int = 2, extra: Sequence[str] = ()) -> Outcome:
    """Start a deploy through the proxy; signal it while ``rule`` delays a request; wait for its end."""
    site.proxy.add(rule)
    deploy = subprocess.Popen(
        site.deploy_command(site.proxy.endpoint_url, threads=threads, extra=extra),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        in_flight = site.proxy.wait_for(lambda log: any(e.injected and not e.done for e in log), timeout=60)
        assert in_flight, "the delayed request never came"
        deploy.send_signal(SIGNALS[signame])
        signalled = time.monotonic()
        stdout, stderr = deploy.communicate(timeout=60)
        exit_after = time.monotonic() - signalled
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.communicate()
    # A request the deploy had sent is still on its way at the proxy: let it land (or fail) first, as on a real
    # server it would before anyone looked, so the runs after this one never race with it.
    # (A hung request is never forwarded: it is only closed, when the proxy releases it.)
    landed = site.proxy.wait_for(
        lambda log: all(entry.done or (entry.injected or "").startswith("hang") for entry in log), timeout=60
    )
    assert landed, "a request the deploy sent never ended at the proxy"
    assert deploy.returncode != 0, stdout
    if signame != "SIGKILL":
        assert "KeyboardInterrupt" in stderr, stderr
    return Outcome(stdout, f"{stderr}\n{signame}", error=None, killed=True, exit_after=exit_after)


SIGNAL_CASES = [
    *((MANIFEST, signame, target) for target in ("single", "multipart") for signame in SIGNALS),
    *((BOTO3, signame, "single") for signame in ("SIGTERM", "SIGKILL")),
]


@pytest.mark.parametrize(
    ("strategy", "signame", "target"),
    SIGNAL_CASES,
    ids=[f"{'manifest' if s == MANIFEST else 'boto3'}-{t}-{n}" for s, n, t in SIGNAL_CASES],
)
def test_a_deploy_signalled_mid_upload_is_repaired_by_the_next(site: Site, signame: str, target: str) -> None:
    files(site.tree, big=target == "multipart")
    site.run()
    files(site.tree, version="v2", big=target == "multipart")
    if target == "single":
        rule = Rule(Delay(1.0), method="PUT", key_contains="txt/03", times=1)
    else:
        rule = Rule(Delay(1.0), method="PUT", key_contains=BIG, query_contains="partNumber=2", times=1)

    outcome = run_and_signal(site, signame, rule)

    # A killed deploy cannot record its uploads: the manifest still describes the v1 objects it replaced,
    # which verified mode notices (the listing differs), and the repair run uploads them again.
    stale = [name for name in site.tree.files() if name.startswith(("txt/", "css/", "js/", "img/", "big/"))]
    assert_repaired(site, outcome, error=signame, stale_ok=stale if signame == "SIGKILL" else ())


@pytest.mark.parametrize("strategy", [MANIFEST], ids=["manifest"])
def test_sigterm_while_a_request_hangs_stops_the_deploy_within_seconds(site: Site) -> None:
    files(site.tree)
    outcome = run_and_signal(site, "SIGTERM", Rule(Hang(60), method="PUT", key_contains="txt/03", times=1))

    # The hung request (held up to 60 s) is only released by the repair below.
    assert outcome.exit_after < 15, f"SIGTERM waited {outcome.exit_after:.1f} s for the hung request"
    assert_repaired(site, outcome, error="SIGTERM")


@pytest.mark.parametrize("strategy", [MANIFEST], ids=["manifest"])
def test_trusting_mode_after_a_sigkill_and_a_rollback_uploads_what_the_killed_run_overwrote(site: Site) -> None:
    site.settings.COLLECTFAST_MANIFEST_MODE = "trusting"
    files(site.tree)
    site.run()
    files(site.tree, version="v2")
    outcome = run_and_signal(
        site, "SIGKILL", Rule(Delay(1.0), method="PUT", key_contains="txt/03", times=1), extra=("--mode", "trusting")
    )
    files(site.tree)  # a local rollback to the bytes the manifest knows

    rolled_back = site.run()

    assert rolled_back.error is None
    assert site.objects() == site.tree.files(), "the rollback skipped files the killed run had overwritten"
    assert_repaired(site, outcome, error="SIGKILL")


# Two deploys at once.


@pytest.mark.parametrize("strategy", [MANIFEST], ids=["manifest"])
def test_two_concurrent_deploys_one_failing_its_manifest_write(
    s3_server: S3Server, site: Site, tmp_path: Path, settings: Any
) -> None:
    base = site.tree
    files(base)
    site.run()
    a, b = StaticTree(tmp_path / "a"), StaticTree(tmp_path / "b")
    for tree in (a, b):
        for name, data in base.files().items():
            tree.write(name, data)
    a.write("css/app.css", "body { color: blue } /* a */\n")
    a.write("only-a.txt", "a")
    b.write("js/app.js", "console.log('b');\n")
    b.write("only-b.txt", "b")
    proxy_b = FaultProxy(s3_server.endpoint_url)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    site.proxy.add(Rule(Respond(500, "InternalError"), method="PUT", key_contains=MANIFEST_KEY))
    together = ("--barrier", str(barrier), "--parties", "2")
    try:
        deploys = [
            subprocess.Popen(
                site.deploy_command(endpoint, tree.root, extra=together),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for endpoint, tree in ((site.proxy.endpoint_url, a), (proxy_b.endpoint_url, b))
        ]
        (_, err_a), (out_b, err_b) = (deploy.communicate(timeout=120) for deploy in deploys)
    finally:
        proxy_b.stop()
        for deploy in deploys:
            if deploy.poll() is None:
                deploy.kill()
                deploy.communicate()

    assert deploys[1].returncode == 0, err_b
    assert deploys[0].returncode != 0
    assert "The manifest was not saved" in err_a, err_a
    # Each object is one deploy's version: where the trees differ, whichever upload landed last.
    for name, data in site.objects().items():
        assert data in (a.files().get(name), b.files().get(name)), name
    # A's uploads are not in the manifest; entries of the names A overwrote may describe the old bytes.
    outcome = Outcome(out_b, err_a, error=None, killed=True)
    stale = ["css/app.css", "js/app.js"]
    # The repair deploys what both meant: A's change and B's.
    for name, data in a.files().items():
        base.write(name, data)
    base.write("js/app.js", b.files()["js/app.js"])
    base.write("only-b.txt", "b")
    assert_repaired(site, outcome, error="The manifest was not saved", stale_ok=stale)


# Manifests planted in the bucket.

NEWER = b'{"format":"collectfast-manifest","version":2,"entries":{"css/app.css":"somewhere else"}}'
PLANTED = {
    "truncated": b'{"format":"collectfast-manifest","version":1,"entries":{"css/app.css":{"md5":"',
    "binary": bytes(range(256)) * 4,
    "wrong-types": (
        b'{"format":"collectfast-manifest","version":1,"entries":{"css/app.css":'
        b'{"md5":12,"size":"600","etag":null,"options":[],"uploaded_at":5}}}'
    ),
    "wrong-version-type": b'{"format":"collectfast-manifest","version":"1","entries":{}}',
    "entries-a-list": b'{"format":"collectfast-manifest","version":1,"entries":[]}',
    "nested": b"[" * 100_000 + b"]" * 100_000,
    "huge-number": b'{"format":"collectfast-manifest","version":' + b"9" * 5000 + b',"entries":{}}',
    "newer-version": NEWER,
}


@pytest.mark.parametrize("strategy", [MANIFEST], ids=["manifest"])
@pytest.mark.parametrize("planted", list(PLANTED))
def test_a_planted_manifest_is_reported_and_every_file_uploaded(site: Site, planted: str) -> None:
    files(site.tree)
    site.bucket.client.put_object(Bucket=site.bucket.name, Key=MANIFEST_KEY, Body=PLANTED[planted])

    outcome = site.run()

    assert set(outcome.claimed) == set(site.tree.files())
    if planted == "newer-version":
        with pytest.raises(NewerManifestError):
            loads(NEWER)
        assert "format version 2; this release reads up to 1" in outcome.stderr, outcome.stderr
        assert_repaired(site, outcome, newer_manifest=NEWER)
    else:
        assert "unusable" in outcome.stderr, outcome.stderr
        assert_repaired(site, outcome)


@pytest.mark.parametrize("strategy", [MANIFEST], ids=["manifest"])
@pytest.mark.parametrize("mode", ["verified", "trusting"])
def test_a_manifest_cut_off_mid_body_uploads_everything_and_is_left_alone(site: Site, mode: str) -> None:
    site.settings.COLLECTFAST_MANIFEST_MODE = mode
    files(site.tree, n=40)
    assert site.run().error is None
    manifest = site.bucket.objects()[MANIFEST_KEY]
    # The manifest is parsed a line at a time as it arrives: the answer's headers and its first
    # lines come, then the connection drops.
    site.proxy.add(Rule(DropResponse(1500), method="GET", key_contains=MANIFEST_KEY, times=1))

    outcome = site.run()

    assert len(fired(site.proxy)) == 1
    assert "Every file is uploaded, and the manifest is left as it is." in outcome.stderr, outcome.stderr
    assert set(outcome.claimed) == set(site.tree.files())
    assert site.bucket.objects()[MANIFEST_KEY] == manifest
    assert_repaired(site, outcome)


# Objects changed behind collectfast's back.


def test_objects_overwritten_or_deleted_out_of_band_are_repaired(site: Site) -> None:
    files(site.tree, big=True)
    first = site.run()
    assert first.error is None
    client, name = site.bucket.client, site.bucket.name
    client.put_object(Bucket=name, Key="css/app.css", Body=b"/* defaced */")
    client.put_object(Bucket=name, Key=BIG, Body=b"truncated")
    client.delete_object(Bucket=name, Key="js/app.js")
    # A fresh process: nothing cached (the manifest, in verified mode, is checked against a listing anyway).
    args = ("--no-cache",) if not site.manifest else ()

    outcome = site.run(*args)

    assert sorted(outcome.claimed) == sorted(["css/app.css", BIG, "js/app.js"])
    assert_repaired(site, outcome, run_args=args)


# The manifest write itself, broken once (botocore's retries off, as in every case here): retried as
# uploads are; a write that took effect with its answer lost is read back, never reported as unsaved.


@pytest.mark.parametrize("strategy", [MANIFEST], ids=["manifest"])
@pytest.mark.parametrize("when", ["create", "replace"])
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(DropResponse(0), id="answer-lost"),
        pytest.param(Respond(503, "SlowDown"), id="slowdown"),
    ],
)
def test_a_manifest_write_broken_once(site: Site, when: str, fault: Any) -> None:
    files(site.tree)
    if when == "replace":
        site.run()
        files(site.tree, version="v2")
    site.proxy.add(Rule(fault, method="PUT", key_contains=MANIFEST_KEY, times=1))

    outcome = site.run()

    assert len(fired(site.proxy)) == 1
    if outcome.error and "The manifest was not saved" in outcome.error:
        saved = loads(site.bucket.objects()[MANIFEST_KEY]) if MANIFEST_KEY in site.bucket.list_keys() else None
        local = site.tree.files()
        recorded = saved is not None and all(
            name in saved.entries and saved.entries[name].md5 == md5(local[name]) for name in outcome.claimed
        )
        assert not recorded, "the error says the manifest was not saved, but the bucket holds this run's entries"
    assert_repaired(site, outcome)
