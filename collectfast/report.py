"""The machine-readable account of a run: ``--report FILE`` (JSON) and the GitHub Actions step summary.

The JSON's shape is documented in docs/report-schema.json; ``schema`` changes only when a field
is removed or changes meaning (new fields may be added within a schema version).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from collectfast import __version__

if TYPE_CHECKING:
    from collectfast.deploy import Deploy

SCHEMA = 1
SUCCEEDED, FAILED, INTERRUPTED = "succeeded", "failed", "interrupted"


def build(deploy: Deploy, *, outcome: str, message: str | None, post_processed: int) -> dict[str, Any]:
    storage = deploy.storage
    storage_class = storage.__class__
    tally = deploy.tally
    strategy_class = type(deploy.strategy)
    return {
        "schema": SCHEMA,
        "collectfast": __version__,
        "outcome": outcome,
        "message": message,
        "dry_run": deploy.dry_run,
        "strategy": f"{strategy_class.__module__}.{strategy_class.__qualname__}",
        "storage": {
            "class": f"{storage_class.__module__}.{storage_class.__qualname__}",
            "bucket": getattr(storage, "bucket_name", None),
            "location": str(getattr(storage, "location", "") or ""),
        },
        "counts": {
            "found": deploy.found,
            "uploaded": tally.uploaded,
            "skipped": tally.unchanged,
            "failed": tally.failed,
            "not_tried": tally.queued - tally.uploaded - tally.unchanged - tally.failed,
            "post_processed": post_processed,
            "pruned": deploy.pruned,
        },
        "bytes_uploaded": deploy.bytes_uploaded,
        "requests": dict(sorted(deploy.requests.counts.items())) if deploy.counting_requests else None,
        "seconds": {name: round(seconds, 3) for name, seconds in deploy.timings.items()},
        "worker_seconds": {name: round(seconds, 3) for name, seconds in deploy.worker_seconds.items()},
        "failures": [{"path": f.task[1], "error": f"{type(f.error).__name__}: {f.error}"} for f in deploy.failures],
        "invalidation": deploy.invalidation.as_report() if deploy.invalidation is not None else None,
    }


def write(report: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def markdown(report: dict[str, Any]) -> str:
    """A short table of the same figures, for ``$GITHUB_STEP_SUMMARY``."""
    counts = report["counts"]
    requests = report["requests"] or {}
    rows = [
        ("Outcome", report["outcome"] + (" (dry run)" if report["dry_run"] else "")),
        ("Files found", counts["found"]),
        ("Uploaded", counts["uploaded"]),
        ("Unchanged", counts["skipped"]),
        ("Failed", counts["failed"]),
        ("Post-processed", counts["post_processed"]),
        ("Pruned", counts["pruned"]),
        ("Bytes uploaded", report["bytes_uploaded"]),
        ("Requests", ", ".join(f"{n} {kind}" for kind, n in requests.items()) or "none"),
        ("Seconds", round(sum(report["seconds"].values()), 1)),
    ]
    invalidation = report.get("invalidation")
    if invalidation:
        ids = ", ".join(invalidation["ids"])
        rows.append(("Invalidation", f"{invalidation['status']}: {len(invalidation['paths'])} paths {ids}".rstrip()))
    lines = ["### collectfast", "", "| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines) + "\n"


def publish(report: dict[str, Any], path: str | None) -> None:
    """Write the report where it was asked for, and the step summary when running in GitHub Actions."""
    if path:
        write(report, path)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown(report))
