"""Virtualenvs for the contenders that cannot share ours: installed from the package index, once."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"


def _pinned(name: str) -> str:
    # The same transport as our own row, so differences come from the package under test.
    return f"{name}=={metadata.version(name)}"


def requirements(name: str) -> list[str]:
    transport = [_pinned("boto3"), _pinned("botocore"), _pinned("django-storages")]
    return {
        # 2.2.0 uses APIs that later Django removed; 4.2 is the newest it runs on.
        "collectfast-2.2.0": ["collectfast==2.2.0", "Django>=4.2,<5", *transport],
        "collectfasta": ["collectfasta", *transport],
        "awscli": ["awscli"],
    }[name]


def base_python(name: str) -> str:
    """Django 4.2 (for Collectfast 2.2.0) supports Python up to 3.12: use one when ours is newer."""
    if name != "collectfast-2.2.0" or sys.version_info < (3, 13):
        return sys.executable
    candidates = [shutil.which(f"python3.{minor}") for minor in (12, 11)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[12].*/bin/python")), reverse=True)
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "import venv"], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


def ensure(name: str, log: Path) -> Path:
    """The venv's python, creating or updating the venv when its requirements changed."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements.json"
    wanted = requirements(name)
    if python.exists() and marker.exists() and json.loads(marker.read_text()) == wanted:
        return python
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.run([base_python(name), "-m", "venv", "--clear", str(venv)], check=True, stdout=out, stderr=out)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
            check=True,
            stdout=out,
            stderr=out,
        )
    marker.write_text(json.dumps(wanted))
    return python


def version(python: Path, package: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"from importlib.metadata import version; print(version({package!r}))"],
        capture_output=True,
        text=True,
        cwd="/",  # not the checkout, whose collectfast.egg-info would answer for the venv's package
    )
    return out.stdout.strip() or "?"
