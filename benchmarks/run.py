"""``python -m benchmarks.run``: every contender, every scenario, one machine, one run.

Environment (all optional):

- ``BENCH_N`` synthetic files besides Django admin's (2000)
- ``BENCH_DELAY_MS`` server delay per request while a contender is timed (20)
- ``BENCH_REPEATS`` timed runs per cell, the median is reported (3)
- ``BENCH_SLOW_S`` a cell whose first run took longer is not repeated (20)
- ``BENCH_CONTENDERS`` / ``BENCH_SCENARIOS`` comma-separated keys to keep (all); a contender
  written ``key:scenario+scenario`` runs only those of the scenarios kept
- ``BENCH_FULL=1`` also run the slow serial rows (stock) on every scenario
- ``BENCH_SEED`` (5), ``BENCH_THREADS`` workers for every parallel contender (20),
  ``BENCH_TIMEOUT_S`` per run (3600), ``BENCH_OUT`` output folder (benchmarks/out)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import contenders as cs
from benchmarks import report, seed, tree, venvs, verify
from benchmarks.measure import ChildRun, run_child
from benchmarks.s3 import Server, child_env

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("GET", "HEAD", "PUT", "LIST", "DELETE", "POST")


@dataclass
class Config:
    n: int
    delay_ms: float
    repeats: int
    slow_s: float
    seed: int
    threads: int
    timeout: float
    full: bool
    contenders: list[str] | None
    scenarios: list[str]
    only: dict[str, list[str]]
    out: Path

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ

        def keys(name: str) -> list[str] | None:
            value = env.get(name, "").strip()
            return [k.strip() for k in value.split(",") if k.strip()] or None

        only: dict[str, list[str]] = {}
        contenders = keys("BENCH_CONTENDERS")
        for i, spec in enumerate(contenders or []):
            key, _, scenarios = spec.partition(":")
            if scenarios:
                only[key] = [s.strip() for s in scenarios.split("+") if s.strip()]
            if contenders is not None:
                contenders[i] = key
        n = int(env.get("BENCH_N", "2000"))
        delay = float(env.get("BENCH_DELAY_MS", "20"))
        return cls(
            n=n,
            delay_ms=delay,
            repeats=max(1, int(env.get("BENCH_REPEATS", "3"))),
            slow_s=float(env.get("BENCH_SLOW_S", "20")),
            seed=int(env.get("BENCH_SEED", "5")),
            threads=int(env.get("BENCH_THREADS", "20")),
            timeout=float(env.get("BENCH_TIMEOUT_S", "3600")),
            full=env.get("BENCH_FULL", "") not in ("", "0"),
            contenders=contenders,
            scenarios=keys("BENCH_SCENARIOS") or list(cs.SCENARIOS),
            only=only,
            out=Path(env.get("BENCH_OUT", ROOT / "benchmarks" / "out")).resolve(),
        )


@dataclass
class Cell:
    contender: str
    scenario: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"
    note: str = ""


class Bench:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.run_dir = config.out / f"n{config.n}-d{config.delay_ms:g}"
        self.logs = self.run_dir / "logs"
        self.server: Server | None = None
        self.tree: tree.Tree | None = None
        self.cells: list[Cell] = []
        self.references: dict[str, Path] = {}
        self.log_count = 0

    # -- plumbing -----------------------------------------------------------------------------

    def say(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def next_log(self, name: str) -> Path:
        self.log_count += 1
        return self.logs / f"{self.log_count:04d}-{name}.log"

    def cache_dir(self, c: cs.Contender) -> Path:
        return self.run_dir / "cache" / c.key

    def wipe_cache(self, c: cs.Contender) -> None:
        shutil.rmtree(self.cache_dir(c), ignore_errors=True)

    def argv_env(
        self, c: cs.Contender, bucket: str, tree_dir: Path, storage: str, prune: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        assert self.server is not None
        env = child_env(self.server.endpoint_url)
        python = str(c.python)
        if c.kind in ("floor", "hash", "list"):
            argv = [python, "-m", "benchmarks.floor", "--root", str(tree_dir), "--threads", str(self.config.threads)]
            if c.kind == "hash":
                argv.append("--hash-only")
            else:
                if c.kind == "list":
                    argv.append("--list-only")
                argv += ["--bucket", bucket, "--endpoint", self.server.endpoint_url]
            if storage == "s3-manifest":
                argv.append("--post-process")
            if prune:
                argv.append("--prune")
            env["PYTHONPATH"] = str(ROOT)
            return argv, env
        if c.kind == "aws":
            aws = str(Path(python).parent / "aws")
            delete = ["--delete"] if prune else []
            return [aws, "s3", "sync", str(tree_dir), f"s3://{bucket}/", "--only-show-errors", *delete], env
        settings = c.manifest_settings if storage == "s3-manifest" and c.manifest_settings is not None else c.settings
        if prune:
            settings = {**settings, **cs.PRUNE_SETTINGS}
        env.update(
            PYTHONPATH=str(cs.SITE),
            DJANGO_SETTINGS_MODULE="bench_settings",
            BENCH_APP=c.app,
            BENCH_STORAGE=storage,
            BENCH_STATIC_DIR=str(tree_dir),
            BENCH_BUCKET=bucket,
            BENCH_ENDPOINT=self.server.endpoint_url,
            BENCH_THREADS=str(self.config.threads),
            BENCH_SETTINGS=json.dumps(settings),
        )
        if c.cache:
            env["BENCH_CACHE_DIR"] = str(self.cache_dir(c))
        return [python, "-m", "django", "collectstatic", "--noinput", "-v", "1", *(["--prune"] if prune else [])], env

    def child(
        self, c: cs.Contender, bucket: str, tree_dir: Path, storage: str, label: str, prune: bool = False
    ) -> ChildRun:
        argv, env = self.argv_env(c, bucket, tree_dir, storage, prune)
        # Not the checkout: ``python -m`` puts the working folder first on sys.path, where our
        # collectfast would shadow the older packages that import under the same name.
        cwd = ROOT if c.kind in ("floor", "hash", "list") else self.run_dir
        run = run_child(argv, env, cwd, self.next_log(f"{c.key}-{label}"), self.config.timeout)
        if not run.ok:
            raise RuntimeError(f"{c.key} {label} failed (exit {run.returncode}); log {run.log}:\n{run.tail()}")
        return run

    # -- references -----------------------------------------------------------------------------

    def manifest_reference(self, c: cs.Contender) -> Path:
        """What S3ManifestStaticStorage should hold: Django's own post-processing, in the contender's Django."""
        python = str(c.python) if c.kind == "django" else sys.executable
        if python in self.references:
            return self.references[python]
        assert self.tree is not None
        out = self.run_dir / "reference" / f"manifest-{len(self.references)}"
        shutil.rmtree(out, ignore_errors=True)
        stock = cs.Contender("ref", "reference", "django", app="stock", python=Path(python))
        argv, env = self.argv_env(stock, "", self.tree.base, "local-manifest")
        env["BENCH_STATIC_ROOT"] = str(out)
        run = run_child(argv, env, self.run_dir, self.next_log("reference"), self.config.timeout)
        if not run.ok:
            raise RuntimeError(f"local post-processing failed; log {run.log}:\n{run.tail()}")
        self.references[python] = out
        return out

    # -- one timed run --------------------------------------------------------------------------

    def timed(
        self,
        c: cs.Contender,
        bucket: str,
        tree_dir: Path,
        files: list[str],
        storage: str,
        check_root: Path,
        prune: bool = False,
    ) -> dict[str, Any]:
        assert self.server is not None and self.tree is not None
        if c.cache == "cold":
            self.wipe_cache(c)
        tree.touch(tree_dir, self.tree.variant_files(tree_dir.name), time.time() + 2)
        with self.server.timed():
            run = self.child(c, bucket, tree_dir, storage, "timed", prune)
            counts, bytes_in = self.server.traffic()
        result: dict[str, Any] = {
            "seconds": run.seconds,
            "peak_rss_mb": run.peak_rss_mb,
            "requests": {k: counts.get(k, 0) for k in KINDS},
            "requests_total": sum(counts.values()),
            "bytes_uploaded": bytes_in,
            "log": str(run.log),
        }
        if c.kind != "hash":
            known = set(self.tree.files)
            if storage == "s3-manifest":
                known |= set(verify.tree_files(check_root))
            correctness = verify.check(self.server.client, bucket, check_root, files, known)
            result["correctness"] = correctness.summary()
        return result

    def untimed(self, c: cs.Contender, bucket: str, tree_dir: Path, storage: str, label: str) -> None:
        assert self.tree is not None
        tree.touch(tree_dir, self.tree.variant_files(tree_dir.name), time.time() + 2)
        self.child(c, bucket, tree_dir, storage, label)

    # -- scenarios ------------------------------------------------------------------------------

    def repeats(self, cell: Cell, run_once: Any) -> None:
        for i in range(self.config.repeats):
            cell.runs.append(run_once(i))
            if i == 0 and cell.runs[0]["seconds"] > self.config.slow_s and self.config.repeats > 1:
                cell.note = f"1 run: it took over {self.config.slow_s:g} s"
                break

    def run_first(self, c: cs.Contender) -> str | None:
        """First deploy, each repeat into a fresh bucket; the first bucket is kept as the redeploys' seed."""
        assert self.server is not None and self.tree is not None
        cell = self.add_cell(c, "first")
        kept: list[str] = []

        def once(i: int) -> dict[str, Any]:
            bucket = self.server.new_bucket(f"{c.key}-first")  # type: ignore[union-attr]
            self.wipe_cache(c)
            result = self.timed(c, bucket, self.tree.base, self.tree.files, "s3", self.tree.base)  # type: ignore[union-attr]
            if i == 0 and c.kind != "hash":
                kept.append(bucket)
            else:
                self.server.drop_bucket(bucket)  # type: ignore[union-attr]
            return result

        self.guard(cell, lambda: self.repeats(cell, once))
        return kept[0] if kept and cell.status == "ok" else None

    def seed_bucket(self, c: cs.Contender, storage: str) -> str:
        assert self.server is not None and self.tree is not None
        bucket = self.server.new_bucket(f"{c.key}-{storage}")
        if c.kind == "hash":
            return bucket
        self.wipe_cache(c)
        if c.seed_by_self:
            self.untimed(c, bucket, self.tree.base, storage, f"seed-{storage}")
        else:
            source = self.manifest_reference(c) if storage == "s3-manifest" else self.tree.base
            seed.upload_tree(self.server.endpoint_url, bucket, source, verify.tree_files(source))
        return bucket

    def run_redeploys(self, c: cs.Contender, bucket: str | None, wanted: list[str]) -> None:
        """No change, 1% deleted, 1% changed: in that order, on one bucket, as a project's deploys follow."""
        assert self.server is not None and self.tree is not None
        t = self.tree
        if bucket is None:
            seeded: list[str] = []
            self.guard(Cell(c.key, "seed"), lambda: seeded.append(self.seed_bucket(c, "s3")))
            if not seeded:
                for scenario in wanted:
                    cell = self.add_cell(c, scenario)
                    cell.status, cell.note = "failed", "seeding the bucket failed: see logs"
                return
            bucket = seeded[0]
        plans = {
            "nochange": lambda i: ("base", "base"),
            "deleted": lambda i: ("base", "deleted"),
            # Alternate, so every repeat deploys 1% changed files onto what the previous one left.
            "changed": lambda i: ("base", "changed") if i % 2 == 0 else ("changed", "base"),
            "pruned": lambda i: ("base", "deleted"),
        }
        for scenario in cs.REDEPLOYS:
            if scenario not in wanted:
                continue
            cell = self.add_cell(c, scenario)

            def once(i: int, scenario: str = scenario) -> dict[str, Any]:
                previous, current = plans[scenario](i)
                prune = scenario == "pruned"
                # Every pruning repeat first puts back what the one before it deleted.
                if c.stateful or prune:
                    self.untimed(c, bucket, t.variant(previous), "s3", f"prep-{scenario}")  # type: ignore[arg-type]
                directory = t.variant(current)
                files = t.variant_files(current)
                return self.timed(c, bucket, directory, files, "s3", directory, prune)  # type: ignore[arg-type]

            self.guard(cell, lambda cell=cell, once=once: self.repeats(cell, once))  # type: ignore[misc]
        self.server.drop_bucket(bucket)

    def run_manifest(self, c: cs.Contender) -> None:
        assert self.server is not None and self.tree is not None
        cell = self.add_cell(c, "manifest")

        def body() -> None:
            assert self.server is not None and self.tree is not None
            reference = self.manifest_reference(c)
            files = verify.tree_files(reference)
            bucket = self.seed_bucket(c, "s3-manifest")

            def once(i: int) -> dict[str, Any]:
                if c.stateful:
                    self.untimed(c, bucket, self.tree.base, "s3-manifest", "prep-manifest")  # type: ignore[union-attr]
                return self.timed(c, bucket, self.tree.base, files, "s3-manifest", reference)  # type: ignore[union-attr]

            try:
                self.repeats(cell, once)
            finally:
                self.server.drop_bucket(bucket)

        self.guard(cell, body)

    def add_cell(self, c: cs.Contender, scenario: str) -> Cell:
        cell = Cell(c.key, scenario)
        self.cells.append(cell)
        self.save()
        return cell

    def guard(self, cell: Cell, work: Any) -> None:
        self.say(f"{cell.contender} / {cell.scenario}")
        try:
            work()
        except Exception as error:
            cell.status = "failed"
            cell.note = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            self.say(f"  FAILED: {error}")
            (self.logs / f"failure-{cell.contender}-{cell.scenario}.txt").write_text(traceback.format_exc())
        else:
            if cell.runs:
                median = statistics.median(r["seconds"] for r in cell.runs)
                self.say(f"  {median:.2f} s, {cell.runs[0]['requests_total']} requests (n={len(cell.runs)})")
        self.save()

    # -- the whole run --------------------------------------------------------------------------

    def prepare(self, c: cs.Contender) -> None:
        if c.unavailable:
            return
        try:
            if c.venv:
                c.python = venvs.ensure(c.venv, self.logs / f"venv-{c.venv}.log")
            else:
                c.python = Path(sys.executable)
            package = {"collectfast-2.2.0": "collectfast", "collectfasta": "collectfasta", "awscli": "awscli"}
            if c.venv:
                c.version = f"{package[c.venv]} {venvs.version(c.python, package[c.venv])}"
            elif c.app == "collectfast":
                c.version = f"collectfast {venvs.version(c.python, 'collectfast')}"
            if c.kind == "django":
                django_version = f"Django {venvs.version(c.python, 'django')}"
                c.version = f"{c.version}, {django_version}" if c.version else django_version
        except Exception as error:
            c.unavailable = f"not available: could not install ({error})"

    def scenarios_for(self, c: cs.Contender) -> list[str]:
        wanted = [s for s in self.config.scenarios if s in c.scenarios and (s != "pruned" or c.prunes)]
        if c.key in self.config.only:
            wanted = [s for s in wanted if s in self.config.only[c.key]]
        if c.default_scenarios is not None and not self.config.full:
            for s in wanted:
                if s not in c.default_scenarios:
                    cell = self.add_cell(c, s)
                    cell.status = "skipped"
                    cell.note = "not run by default (minutes per run): BENCH_FULL=1 runs it"
            wanted = [s for s in wanted if s in c.default_scenarios]
        return wanted

    def run_contender(self, c: cs.Contender) -> None:
        wanted = self.scenarios_for(c)
        kept = None
        if "first" in wanted:
            kept = self.run_first(c)
        redeploys = [s for s in wanted if s in cs.REDEPLOYS]
        if redeploys:
            self.run_redeploys(c, kept, redeploys)
        elif kept and self.server is not None:
            self.server.drop_bucket(kept)
        if "manifest" in wanted:
            self.run_manifest(c)

    def main(self) -> None:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        started = time.time()
        self.say(f"tree: Django admin + {cfg.n} synthetic files (seed {cfg.seed})")
        self.tree = tree.build(cfg.out / "trees" / f"n{cfg.n}-s{cfg.seed}", cfg.n, cfg.seed)
        found = cs.discover_strategies(sys.executable, self.logs / "discovery.log")
        self.contenders = [c for c in cs.all_contenders(found) if cfg.contenders is None or c.key in cfg.contenders]
        for c in self.contenders:
            self.prepare(c)
            if c.unavailable:
                self.say(f"{c.key}: {c.unavailable}")
        self.server = Server(cfg.delay_ms)
        self.started = started
        try:
            for c in self.contenders:
                if c.unavailable:
                    for s in cfg.scenarios:
                        if s in c.scenarios:
                            cell = self.add_cell(c, s)
                            cell.status, cell.note = "unavailable", c.unavailable
                    continue
                self.run_contender(c)
        finally:
            self.server.stop()
            self.save(final=True)
        self.say(f"done in {time.time() - started:.0f} s: {self.run_dir / 'results.md'}")

    def save(self, final: bool = False) -> None:
        if self.tree is None:
            return
        data = {
            "config": {
                "n": self.config.n,
                "files": len(self.tree.files),
                "large_files": len(self.tree.large),
                "changed": len(self.tree.changed),
                "deleted": len(self.tree.deleted),
                "delay_ms": self.config.delay_ms,
                "repeats": self.config.repeats,
                "slow_s": self.config.slow_s,
                "threads": self.config.threads,
                "seed": self.config.seed,
                "full": self.config.full,
            },
            "machine": machine(),
            "finished": final,
            "elapsed_s": time.time() - getattr(self, "started", time.time()),
            "contenders": [
                {
                    "key": c.key,
                    "label": c.label,
                    "version": c.version,
                    "unavailable": c.unavailable,
                    "settings": c.settings,
                    "manifest_settings": c.manifest_settings,
                    "cache": c.cache,
                }
                for c in getattr(self, "contenders", [])
            ],
            "cells": [cell.__dict__ for cell in self.cells],
        }
        data["tree_bytes"] = self.tree.total_bytes() if final else None
        (self.run_dir / "results.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
        if final:
            report.write(data, self.run_dir)


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        mem_gib = int(mem.split()[1]) / 1024 / 1024
    except (OSError, StopIteration):
        mem_gib = 0
    return {
        "collectfast_source": source_state(),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def source_state() -> str:
    """The commit collectfast ran from, and whether its files had uncommitted changes."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "collectfast")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in collectfast/" if dirty else "")


def main() -> None:
    Bench(Config.from_env()).main()


if __name__ == "__main__":
    main()
