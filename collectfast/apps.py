from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class CollectfastConfig(AppConfig):
    name = "collectfast"
    verbose_name = "Collectfast"

    def ready(self) -> None:
        from collectfast.checks import check_settings

        # collectstatic runs only the checks tagged "staticfiles" before it starts.
        checks.register(check_settings, checks.Tags.staticfiles)
