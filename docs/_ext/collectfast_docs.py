"""The ``setting`` directive and role: every COLLECTFAST_* setting, its type and default from collectfast.conf.

``.. setting:: COLLECTFAST_THREADS`` renders the name with the types and default that
``collectfast.conf.SETTINGS`` holds, followed by the directive's own text. The build warns (an
error under ``-W``) about a setting in SETTINGS that no page documents, and about a documented
name that SETTINGS does not know, so the docs and the code cannot drift apart.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from docutils import nodes
from sphinx.addnodes import desc_signature
from sphinx.application import Sphinx
from sphinx.domains.std import GenericObject
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _settings() -> dict[str, Any]:
    from collectfast.conf import SETTINGS

    return SETTINGS


def type_names(types: tuple[type, ...]) -> str:
    return " | ".join("None" if t is type(None) else t.__name__ for t in types)


def default_text(value: Any) -> str:
    if isinstance(value, timedelta):
        return f"timedelta(days={value.days})" if not value.seconds else f"timedelta(seconds={value.total_seconds():g})"
    return repr(value)


class SettingDirective(GenericObject):
    indextemplate = "pair: %s; setting"

    def handle_signature(self, sig: str, signode: desc_signature) -> str:
        name = super().handle_signature(sig, signode)
        spec = _settings().get(name)
        if spec is None:
            logger.warning("%s is not a setting in collectfast.conf.SETTINGS", name, location=signode)
        else:
            signode += nodes.Text(f": {type_names(spec.types)} = {default_text(spec.default)}")
        return name

    def transform_content(self, contentnode: Any) -> None:
        spec = _settings().get(self.names[0]) if self.names else None
        if spec is not None:
            para = nodes.paragraph()
            para += nodes.strong(text="Default: ")
            para += nodes.literal(text=default_text(spec.default))
            para += nodes.Text(f". Accepts {spec.describe}.")
            contentnode.insert(0, para)


def check_documented(app: Sphinx, env: BuildEnvironment) -> None:
    std = env.get_domain("std")
    documented = {name for (kind, name) in std.objects if kind == "setting"}  # type: ignore[attr-defined]
    for name in sorted(set(_settings()) - documented):
        logger.warning("%s (collectfast.conf.SETTINGS) is documented on no page: add a '.. setting::' for it", name)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_object_type("setting", "setting", indextemplate="pair: %s; setting")
    app.add_directive_to_domain("std", "setting", SettingDirective, override=True)
    app.connect("env-check-consistency", check_documented)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
