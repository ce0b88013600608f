"""collectfast: the fastest, safest collectstatic for remote storages."""

from __future__ import annotations

__version__ = "3.0.0"
