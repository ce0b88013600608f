"""collectfast: the fastest, safest collectstatic for remote storages."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml holds the one version string; the installed metadata carries it here.
    __version__ = version("collectfast")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
