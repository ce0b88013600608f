"""Who runs: the floor, stock collectstatic, each collectfast strategy and mode, and the peers users pick."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOTO3 = "collectfast.strategies.boto3.Boto3Strategy"
SCENARIOS = ("first", "nochange", "changed", "deleted", "pruned", "manifest")
# "pruned" is "deleted" with --prune (aws s3 sync: --delete), last: it removes objects the others expect.
REDEPLOYS = ("nochange", "deleted", "changed", "pruned")
#: What the pruning rows run with: no grace, no history, so every stale object may go at once.
PRUNE_SETTINGS = {"COLLECTFAST_PRUNE_GRACE": 0, "COLLECTFAST_PRUNE_KEEP_DEPLOYS": 0}
QUICK = ("first", "nochange")
PLAIN = ("first",) + REDEPLOYS  # the manifest scenario is the manifest strategies' (BENCH_FULL=1: all)
SITE = Path(__file__).resolve().parent / "site"


@dataclass
class Contender:
    key: str
    label: str
    kind: str  # django, floor, hash, list or aws
    app: str = ""  # BENCH_APP for kind "django"
    venv: str | None = None  # under benchmarks/.venvs; None: the python running the benchmark
    settings: dict[str, Any] = field(default_factory=dict)
    manifest_settings: dict[str, Any] | None = None  # None: same as settings
    cache: str | None = None  # "cold" (emptied before each timed run), "warm" (kept), None (no cache)
    # Keeps state between deploys beyond the objects (a cache, a manifest): before each timed
    # redeploy, an untimed deploy of the previous tree puts that state where a real project has it.
    stateful: bool = False
    # False: a redeploy bucket that no timed first deploy left is seeded by benchmarks.seed, which
    # writes the objects this contender's first deploy writes (S3Storage.save per file), in parallel.
    seed_by_self: bool = True
    scenarios: tuple[str, ...] = SCENARIOS
    # Run by default (None: all). Slow rows keep to the cells the targets need unless BENCH_FULL=1,
    # so that ``make bench`` stays under half an hour on two cores.
    default_scenarios: tuple[str, ...] | None = None
    unavailable: str | None = None
    python: Path | None = None
    version: str = ""

    @property
    def prunes(self) -> bool:
        """Whether it can delete what the local tree no longer has (the "pruned" scenario)."""
        return self.kind in ("floor", "aws") or self.app == "collectfast"


def discover_strategies(python: str, log: Path) -> dict[str, Any]:
    """Import collectfast's optional strategy modules and report the Strategy classes they define."""
    script = r"""
import inspect, json, importlib, os, sys
os.environ["BENCH_APP"] = "collectfast"
os.environ.setdefault("BENCH_STATIC_DIR", "/nonexistent")
os.environ["DJANGO_SETTINGS_MODULE"] = "bench_settings"
import django
django.setup()
from collectfast.strategies import Strategy
from storages.backends.s3 import S3Storage, S3ManifestStaticStorage
# Uninitialised: S3ManifestStaticStorage reads its manifest from the bucket when built.
plain = S3Storage.__new__(S3Storage)
manifest = S3ManifestStaticStorage.__new__(S3ManifestStaticStorage)
found = {}
for name in ("collectfast.strategies.manifest", "collectfast.strategies.upload_all"):
    try:
        module = importlib.import_module(name)
    except Exception as error:
        found[name] = {"error": f"{type(error).__name__}: {error}"}
        continue
    classes = [
        obj for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Strategy) and obj.__module__ == name
        and not inspect.isabstract(obj)
    ]
    found[name] = {
        "classes": [c.__name__ for c in classes],
        "s3": next((f"{name}.{c.__name__}" for c in classes if c.fits(plain)), None),
        "s3-manifest": next((f"{name}.{c.__name__}" for c in classes if c.fits(manifest)), None),
    }
print("BENCH-DISCOVERY " + json.dumps(found))
"""
    env = {"PYTHONPATH": str(SITE), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env, cwd=SITE)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(done.stdout + done.stderr)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH-DISCOVERY "):
            found: dict[str, Any] = json.loads(line.split(" ", 1)[1])
            return found
    error = f"discovery failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'}"
    return {m: {"error": error} for m in ("collectfast.strategies.manifest", "collectfast.strategies.upload_all")}


def _strategy_row(
    key: str,
    label: str,
    found: dict[str, Any],
    module: str,
    extra: dict[str, Any],
    stateful: bool,
    default_scenarios: tuple[str, ...] | None = None,
) -> Contender:
    info = found.get(module, {})
    plain, manifest = info.get("s3"), info.get("s3-manifest")
    row = Contender(key, label, "django", app="collectfast", cache="cold", stateful=stateful)
    row.default_scenarios = default_scenarios
    if "error" in info or not (plain or manifest):
        reason = info.get("error") or f"no Strategy subclass for S3Storage in {module} ({info.get('classes')})"
        row.unavailable = f"not available: {reason}"
        return row
    row.settings = {"COLLECTFAST_STRATEGY": plain, **extra} if plain else {}
    row.manifest_settings = {"COLLECTFAST_STRATEGY": manifest, **extra} if manifest else {}
    if not plain:
        row.scenarios = ("manifest",)
    if not manifest:
        row.scenarios = tuple(s for s in SCENARIOS if s != "manifest")
    return row


def all_contenders(found: dict[str, Any]) -> list[Contender]:
    manifest_module = "collectfast.strategies.manifest"
    return [
        Contender(
            "floor",
            "floor: LIST + md5 + PUT the differing files, 20 workers",
            "floor",
            seed_by_self=False,
        ),
        Contender("hash", "floor: read + md5 every file, no network", "hash", scenarios=REDEPLOYS + ("manifest",)),
        Contender(
            "list",
            "floor: the listing alone, one LIST after another",
            "list",
            seed_by_self=False,
            scenarios=("nochange",),
        ),
        Contender(
            "stock",
            "stock collectstatic",
            "django",
            app="stock",
            seed_by_self=False,
            default_scenarios=("nochange",),
        ),
        Contender(
            "cf-cold",
            "collectfast Boto3Strategy, cache cold",
            "django",
            app="collectfast",
            settings={"COLLECTFAST_STRATEGY": BOTO3},
            cache="cold",
            default_scenarios=PLAIN,
        ),
        Contender(
            "cf-warm",
            "collectfast Boto3Strategy, cache warm",
            "django",
            app="collectfast",
            settings={"COLLECTFAST_STRATEGY": BOTO3},
            cache="warm",
            stateful=True,
            default_scenarios=PLAIN,
        ),
        _strategy_row(
            "cf-verified",
            "collectfast manifest, verified",
            found,
            manifest_module,
            {"COLLECTFAST_MANIFEST_MODE": "verified"},
            stateful=True,
        ),
        _strategy_row(
            "cf-trusting",
            "collectfast manifest, trusting",
            found,
            manifest_module,
            {"COLLECTFAST_MANIFEST_MODE": "trusting"},
            stateful=True,
        ),
        _strategy_row(
            "cf-upload-all",
            "collectfast upload-everything",
            found,
            "collectfast.strategies.upload_all",
            {},
            stateful=False,
            default_scenarios=QUICK,
        ),
        Contender(
            "collectfast-2.2.0",
            "Collectfast 2.2.0, cache cold",
            "django",
            app="collectfast22",
            venv="collectfast-2.2.0",
            settings={"COLLECTFAST_STRATEGY": BOTO3},
            cache="cold",
            default_scenarios=QUICK,
            seed_by_self=False,
        ),
        Contender(
            "collectfasta",
            "Collectfasta, cache cold",
            "django",
            app="collectfasta",
            venv="collectfasta",
            settings={"COLLECTFASTA_STRATEGY": "collectfasta.strategies.boto3.Boto3Strategy"},
            # Its README's recommended strategy for S3ManifestStaticStorage.
            manifest_settings={"COLLECTFASTA_STRATEGY": "collectfasta.strategies.boto3.Boto3ManifestMemoryStrategy"},
            cache="cold",
            default_scenarios=QUICK,
            seed_by_self=False,
        ),
        Contender(
            "aws", "aws s3 sync", "aws", venv="awscli", scenarios=("first",) + REDEPLOYS, default_scenarios=QUICK
        ),
    ]


def runner_python() -> str:
    return sys.executable
