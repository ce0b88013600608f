"""``collectfast.settings``: Collectfast 2.2.0's module-level names, read from the settings when used."""

from __future__ import annotations

import pytest
from django.test import override_settings

import collectfast.settings as compat

GZIP_DEFAULT = ("text/css", "text/javascript", "application/javascript", "application/x-javascript", "image/svg+xml")


def test_defaults():
    assert compat.debug is False
    assert compat.cache_key_prefix == "collectfast06_asset_"
    assert compat.cache == "default"
    assert compat.threads == 4  # tests/settings.py
    assert compat.enabled is True
    assert compat.aws_is_gzipped is False
    assert compat.gzip_content_types == GZIP_DEFAULT


@override_settings(
    COLLECTFAST_DEBUG=True,
    COLLECTFAST_CACHE_KEY_PREFIX="site_",
    COLLECTFAST_CACHE="collectfast",
    COLLECTFAST_THREADS=False,
    COLLECTFAST_ENABLED=False,
    AWS_IS_GZIPPED=True,
    GZIP_CONTENT_TYPES=("text/css",),
)
def test_names_follow_override_settings():
    assert compat.debug is True
    assert compat.cache_key_prefix == "site_"
    assert compat.cache == "collectfast"
    assert compat.threads == 0
    assert compat.enabled is False
    assert compat.aws_is_gzipped is True
    assert compat.gzip_content_types == ("text/css",)


def test_from_import_works():
    from collectfast.settings import cache, threads

    assert (cache, threads) == ("default", 4)


def test_invalid_values_are_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.COLLECTFAST_THREADS = "many"
    with pytest.raises(ImproperlyConfigured, match="COLLECTFAST_THREADS"):
        compat.threads  # noqa: B018


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no_such_setting"):
        compat.no_such_setting  # noqa: B018
    assert {"debug", "threads", "gzip_content_types"} <= set(dir(compat))
