"""Sphinx configuration for collectfast's documentation (make docs)."""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
# The checkout's own collectfast (for the settings list), and the local extension.
sys.path[:0] = [str(ROOT), str(Path(__file__).parent / "_ext")]

# pyproject.toml holds the one version string (as whitenoise's docs/conf.py reads it).
with open(ROOT / "pyproject.toml", "rb") as f:
    release = version = tomllib.load(f)["project"]["version"]

project = "collectfast"
author = "collectfast developers"
copyright = "collectfast developers"

extensions = ["collectfast_docs"]
html_theme = "furo"
html_title = f"collectfast {version}"
exclude_patterns = ["_build", "_ext"]
nitpicky = True
