"""``python -m benchmarks.memory``: peak RSS of every collectfast mode, and the latency ratio, at large N.

``make bench`` gives each contender a bucket of its own, so at N = 100,000 it spends a first
deploy (about 17 minutes on two shared cores) per contender before any redeploy. This shares
one bucket: a timed first deploy with the verified manifest seeds it (the object and the
manifest every mode reads are the same), then each mode's no-change redeploy is timed on it, then,
with ``BENCH_LATENCY_MS``, the server waits that long per request and the sequential listing
(``list``), the floor and the verified redeploy are timed on the same bucket; then each mode's first
deploy on a fresh bucket if ``BENCH_MEMORY_FIRST`` names it. The same tree, server, launcher and settings
as ``make bench``; every run is checked object by object.

Environment: ``BENCH_N`` (100000), ``BENCH_SEED`` (5), ``BENCH_THREADS`` (20),
``BENCH_MEMORY_MODES`` (cold,verified,trusting), ``BENCH_MEMORY_FIRST`` (modes whose first deploy
is also timed; default none besides the verified seed), ``BENCH_LATENCY_MS`` (unset: no latency runs),
``BENCH_OUT`` (benchmarks/out).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import contenders as cs
from benchmarks import tree, verify
from benchmarks.measure import ChildRun, run_child
from benchmarks.s3 import Server, child_env

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "collectfast.strategies.manifest.S3ManifestStrategy"
MODES = {
    "cold": ("collectfast Boto3Strategy, cache cold", {"COLLECTFAST_STRATEGY": cs.BOTO3}),
    "verified": (
        "collectfast manifest, verified",
        {"COLLECTFAST_STRATEGY": MANIFEST, "COLLECTFAST_MANIFEST_MODE": "verified"},
    ),
    "trusting": (
        "collectfast manifest, trusting",
        {"COLLECTFAST_STRATEGY": MANIFEST, "COLLECTFAST_MANIFEST_MODE": "trusting"},
    ),
}


class Runs:
    def __init__(self, n: int, seed: int, threads: int, out: Path) -> None:
        self.threads = threads
        self.out = out
        self.tree = tree.build(out / "trees" / f"n{n}-s{seed}", n, seed)
        self.server = Server(0)
        self.rows: list[dict[str, Any]] = []

    def say(self, message: str) -> None:
        print(f"[memory {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def argv_env(self, mode: str, bucket: str) -> tuple[list[str], dict[str, str], Path]:
        env = child_env(self.server.endpoint_url)
        if mode in ("floor", "list"):
            argv = [sys.executable, "-m", "benchmarks.floor", "--root", str(self.tree.base)]
            argv += ["--threads", str(self.threads), "--bucket", bucket, "--endpoint", self.server.endpoint_url]
            env["PYTHONPATH"] = str(ROOT)
            return argv + (["--list-only"] if mode == "list" else []), env, ROOT
        cache = self.out / "memory" / "cache" / mode
        shutil.rmtree(cache, ignore_errors=True)  # a cold cache, as on a fresh runner
        env.update(
            PYTHONPATH=str(cs.SITE),
            DJANGO_SETTINGS_MODULE="bench_settings",
            BENCH_APP="collectfast",
            BENCH_STORAGE="s3",
            BENCH_STATIC_DIR=str(self.tree.base),
            BENCH_BUCKET=bucket,
            BENCH_ENDPOINT=self.server.endpoint_url,
            BENCH_THREADS=str(self.threads),
            BENCH_SETTINGS=json.dumps(MODES[mode][1]),
            BENCH_CACHE_DIR=str(cache),
        )
        # Outside the checkout, as make bench runs Django contenders.
        return [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v", "1"], env, self.out / "memory"

    def timed(self, mode: str, scenario: str, bucket: str, delay_ms: float = 0) -> ChildRun:
        argv, env, cwd = self.argv_env(mode, bucket)
        tree.touch(self.tree.base, self.tree.files, time.time() + 2)  # a fresh checkout's mtimes
        log = self.out / "memory" / "logs" / f"{len(self.rows):02d}-{mode}-{scenario}-d{delay_ms:g}.log"
        self.server.delay_ms = delay_ms
        with self.server.timed():
            run = run_child(argv, env, cwd, log, 3 * 3600)
        counts, _ = self.server.traffic()
        if not run.ok:
            raise RuntimeError(f"{mode} {scenario} failed; log {log}:\n{run.tail()}")
        row: dict[str, Any] = {
            "mode": mode,
            "scenario": scenario,
            "delay_ms": delay_ms,
            "seconds": round(run.seconds, 2),
            "peak_rss_mb": round(run.peak_rss_mb, 1),
            "requests": counts,
        }
        if mode != "list":
            correct = verify.check(self.server.client, bucket, self.tree.base, self.tree.files, set(self.tree.files))
            row["mismatched"], row["missing"] = len(correct.mismatched), len(correct.missing)
        self.rows.append(row)
        self.say(json.dumps(row))
        return run

    def main(self, modes: list[str], first: list[str], latency: float | None) -> None:
        shared = self.server.new_bucket("memory-shared")
        self.timed("verified", "first", shared)
        for mode in modes:
            self.timed(mode, "nochange", shared)
        if latency is not None:
            for mode in ("list", "floor", "verified"):
                self.timed(mode, "nochange", shared, latency)
        for mode in first:
            if mode != "verified":
                self.timed(mode, "first", self.server.new_bucket(f"memory-{mode}"))


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["mode      scenario  delay ms  seconds  peak RSS MB  requests"]
    for row in rows:
        requests = ", ".join(f"{kind} {n}" for kind, n in sorted(row["requests"].items()))
        lines.append(
            f"{row['mode']:9} {row['scenario']:9} {row['delay_ms']:8g} {row['seconds']:8.2f} "
            f"{row['peak_rss_mb']:12.1f}  {requests}"
        )
    return "\n".join(lines)


def main() -> None:
    env = os.environ
    n = int(env.get("BENCH_N", "100000"))
    out = Path(env.get("BENCH_OUT", ROOT / "benchmarks" / "out")).resolve()
    runs = Runs(n, int(env.get("BENCH_SEED", "5")), int(env.get("BENCH_THREADS", "20")), out)
    modes = [m for m in env.get("BENCH_MEMORY_MODES", "cold,verified,trusting").split(",") if m]
    first = [m for m in env.get("BENCH_MEMORY_FIRST", "").split(",") if m]
    latency = float(env["BENCH_LATENCY_MS"]) if env.get("BENCH_LATENCY_MS") else None
    try:
        runs.main(modes, first, latency)
    finally:
        runs.server.stop()
        result = out / "memory" / f"n{n}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps({"n": n, "files": len(runs.tree.files), "runs": runs.rows}, indent=2))
        print(table(runs.rows))
        print(f"written to {result}")


if __name__ == "__main__":
    main()
