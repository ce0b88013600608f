"""The documentation covers every setting: each name in collectfast.conf.SETTINGS has a ``.. setting::`` entry.

The entry's type and default are rendered from SETTINGS by docs/_ext/collectfast_docs.py when the
docs are built (``make docs``, which also fails on a missing entry); this test needs no Sphinx.
"""

from __future__ import annotations

import re
from pathlib import Path

from collectfast.conf import SETTINGS

DOCS = Path(__file__).resolve().parent.parent / "docs"
DIRECTIVE = re.compile(r"^\.\. setting:: (\S+)\s*$", re.MULTILINE)


def documented() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for page in sorted(DOCS.rglob("*.rst")):
        for name in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(str(page.relative_to(DOCS)))
    return found


def test_every_setting_is_documented():
    missing = sorted(set(SETTINGS) - set(documented()))
    assert not missing, f"add a '.. setting::' entry to docs/configuration.rst for: {', '.join(missing)}"


def test_every_documented_setting_exists():
    unknown = sorted(set(documented()) - set(SETTINGS))
    assert not unknown, f"documented but not in collectfast.conf.SETTINGS: {', '.join(unknown)}"


def test_each_setting_is_documented_once():
    twice = {name: pages for name, pages in documented().items() if len(pages) > 1}
    assert not twice


def test_defaults_are_rendered_from_settings():
    # The entries carry no hand-written default that could drift: the extension renders SETTINGS[name].default.
    text = (DOCS / "configuration.rst").read_text(encoding="utf-8")
    assert "Default:" not in text
