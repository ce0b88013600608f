"""The user's surface while a run goes: progress on stderr, the JSON report, the GitHub step summary."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from django.core.management.base import CommandError

from collectfast.progress import PLAIN_EVERY, Progress
from tests.fixtures import Bucket, StaticTree, collectstatic

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "report-schema.json").read_text())


def write_files(tree: StaticTree, n: int) -> None:
    for i in range(n):
        tree.write(f"f/{i:03}.txt", f"file {i}")


def read_report(path: Path) -> dict:
    report = json.loads(path.read_text())
    jsonschema.validate(report, SCHEMA)
    return report


def test_a_successful_run_reports_its_figures(s3_settings, bucket: Bucket, static_tree: StaticTree, tmp_path: Path):
    write_files(static_tree, 5)
    collectstatic()
    static_tree.write("f/002.txt", "changed")
    bucket.server.reset()

    collectstatic("--report", str(tmp_path / "report.json"))

    report = read_report(tmp_path / "report.json")
    assert report["outcome"] == "succeeded" and report["message"] is None
    assert report["strategy"] == "collectfast.strategies.boto3.Boto3Strategy"
    assert report["storage"] == {"class": "storages.backends.s3.S3Storage", "bucket": bucket.name, "location": ""}
    assert report["counts"] == {
        "found": 5,
        "uploaded": 1,
        "skipped": 4,
        "failed": 0,
        "not_tried": 0,
        "post_processed": 0,
        "pruned": 0,
    }
    assert report["bytes_uploaded"] == len("changed")
    assert report["requests"] == bucket.counts() == {"LIST": 1, "PUT": 1}
    assert {"find", "look_up", "upload", "finish"} <= set(report["seconds"])
    assert report["failures"] == []


def test_a_partial_failure_is_reported_with_each_failed_file(s3_settings, settings, bucket, static_tree, tmp_path):
    settings.COLLECTFAST_REPORT = str(tmp_path / "report.json")
    write_files(static_tree, 5)
    bucket.server.add_fault("PUT", "f/003", status=500, code="InternalError")
    settings.COLLECTFAST_RETRIES = 0

    with pytest.raises(CommandError):
        collectstatic()

    report = read_report(tmp_path / "report.json")
    assert report["outcome"] == "failed"
    assert "could not upload 1 of 5 files" in report["message"]
    assert report["counts"]["uploaded"] == 4 and report["counts"]["failed"] == 1
    assert [failure["path"] for failure in report["failures"]] == ["f/003.txt"]
    assert report["failures"][0]["error"].startswith("ClientError: An error occurred (InternalError)")


def test_a_dry_run_reports_what_would_be_uploaded(s3_settings, bucket: Bucket, static_tree, tmp_path: Path):
    write_files(static_tree, 3)

    collectstatic("--dry-run", "--report", str(tmp_path / "report.json"))

    report = read_report(tmp_path / "report.json")
    assert report["dry_run"] is True and report["outcome"] == "succeeded"
    assert report["counts"]["uploaded"] == 3 and report["bytes_uploaded"] == 0
    assert bucket.list_keys() == []


def test_github_actions_gets_a_step_summary(s3_settings, static_tree: StaticTree, tmp_path: Path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_files(static_tree, 2)

    collectstatic()

    text = summary.read_text()
    assert text.startswith("earlier step\n### collectfast\n")
    assert "| Uploaded | 2 |" in text and "| Requests | 1 LIST, 2 PUT |" in text


def test_progress_lines_on_a_pipe_come_at_most_every_ten_seconds():
    now = [0.0]
    written: list[str] = []
    progress = Progress(written.append, enabled=True, terminal=False, clock=lambda: now[0])
    progress.begin("uploading", total=1000)
    for i in range(1000):
        now[0] = i * 0.05  # a 50-second run
        progress.add(uploaded=1, sent=100)

    assert len(written) == int(49.95 // PLAIN_EVERY)
    assert all(line.endswith("\n") and "\r" not in line for line in written)
    assert written[0].startswith("collectfast: uploading | 201/1000 files | 201 uploaded, 0 unchanged | 20.1 KB sent")


def deploy_command(bucket: Bucket, static: StaticTree, verbosity: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.deploy_process",
        *("--endpoint", bucket.server.endpoint_url, "--bucket", bucket.name, "--static", str(static.root)),
        *("--strategy", "collectfast.strategies.boto3.Boto3Strategy", "--verbosity", str(verbosity)),
    ]


def run_on_a_terminal(command: list[str]) -> str:
    """stderr of ``command`` when it is a pseudo-terminal."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    output = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        process.wait(timeout=60)
        os.close(controller)
    return output.decode(errors="replace")


def test_progress_is_redrawn_in_place_on_a_terminal(s3_settings, bucket: Bucket, static_tree: StaticTree):
    write_files(static_tree, 20)

    stderr = run_on_a_terminal(deploy_command(bucket, static_tree, verbosity=1))

    assert "\r\x1b[2Kcollectfast: uploading | " in stderr
    assert "| 20/20 files | 20 uploaded, 0 unchanged |" in stderr
    assert stderr.endswith("\r\x1b[2K")  # wiped before the summary


def test_no_progress_on_a_pipe_for_a_short_run_nor_at_verbosity_0(s3_settings, bucket: Bucket, static_tree):
    write_files(static_tree, 20)

    piped = subprocess.run(deploy_command(bucket, static_tree, 1), capture_output=True, text=True, check=True)
    quiet = run_on_a_terminal(deploy_command(bucket, static_tree, 0))

    assert "collectfast:" not in piped.stderr and "\r" not in piped.stderr
    assert "20 static files copied" in piped.stdout
    assert "collectfast:" not in quiet
