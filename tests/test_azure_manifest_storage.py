"""A hashing (manifest) storage on Azure, post-processed locally: the bucket equals stock's, against Azurite."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

pytest.importorskip("azure.storage.blob", reason="needs collectfast[azure] (make test installs it)")

from azure.core.exceptions import ResourceNotFoundError  # noqa: E402
from django.contrib.staticfiles.storage import ManifestFilesMixin  # noqa: E402
from django.core.cache import caches  # noqa: E402
from storages.backends.azure_storage import AzureStorage  # noqa: E402

from collectfast.manifest import loads  # noqa: E402
from tests import test_azure  # noqa: E402
from tests.fixtures import StaticTree, collectstatic  # noqa: E402
from tests.test_azure import Container, azure_storage, direct_client  # noqa: E402

container = test_azure.container  # azurite: tests/conftest.py

MANIFEST = "collectfast-manifest.json"


class ManifestAzureStorage(ManifestFilesMixin, AzureStorage):
    """What a project writes for hashed names on Azure: django-storages ships no such class."""

    def read_manifest(self) -> str | None:
        # AzureStorage raises the SDK's error for a missing blob, not FileNotFoundError, which
        # ManifestFilesMixin expects: without this it cannot start on an empty container, stock or not.
        try:
            return super().read_manifest()
        except ResourceNotFoundError:
            return None


def write_hashed_site(tree: StaticTree) -> None:
    tree.write("css/base/reset.css", "html { margin: 0 }\n.bg { background: url('/static/img/bg.png') }\n")
    tree.write("css/app.css", '@import "base/reset.css";\nbody { background: url("../img/bg.png") }\n')
    tree.write("js/app.js", 'console.log("hi");\n')
    tree.write("img/bg.png", b"\x89PNG fake")


ORIGINALS = 4


def deploy(settings: Any, target: Container, *args: str) -> Any:
    backend = "tests.test_azure_manifest_storage.ManifestAzureStorage"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": azure_storage(target, backend=backend)}
    return collectstatic(*args)


def snapshot(target: Container) -> dict[str, tuple[bytes, str]]:
    return {
        key: (data, target.properties(key).content_settings.content_type)
        for key, data in target.objects().items()
        if key != MANIFEST
    }


def test_a_manifest_storage_gives_the_stock_container_with_files_uploaded_by_collectfast(
    settings, container: Container, static_tree: StaticTree
):
    write_hashed_site(static_tree)
    stock = Container(
        f"{container.name}-stock",
        container.server,
        direct_client(container.server).create_container(f"{container.name}-stock"),
    )
    deploy(settings, stock, "--disable-collectfast")
    container.server.reset()

    run = deploy(settings, container)

    expected = snapshot(stock)
    assert snapshot(container) == expected
    paths = json.loads(expected["staticfiles.json"][0])["paths"]
    assert re.fullmatch(r"css/app\.[0-9a-f]{12}\.css", paths["css/app.css"])
    assert f"{ORIGINALS} static files copied, {ORIGINALS} post-processed." in run.stdout
    # Originals, hashed copies and staticfiles.json, one Put Blob each; no exists() per name.
    assert container.counts()["PUT"] == ORIGINALS * 2 + 1
    caches["default"].clear()
    container.server.reset()

    run = collectstatic()

    assert container.counts() == {"LIST": 1}
    assert f"0 static files copied, {ORIGINALS} unmodified" in run.stdout
    assert snapshot(container) == expected


def test_a_manifest_storage_with_the_manifest_strategy(settings, container: Container, static_tree: StaticTree):
    settings.COLLECTFAST_STRATEGY = "collectfast.strategies.azure.AzureManifestStrategy"
    write_hashed_site(static_tree)
    deploy(settings, container)
    recorded = loads(container.objects()[MANIFEST]).entries
    assert {"staticfiles.json", "css/app.css", paths_of(container)["css/app.css"]} <= set(recorded)
    container.server.reset()

    collectstatic()

    assert container.counts() == {"GET": 1, "LIST": 1}  # verified mode: the manifest and one listing


def paths_of(target: Container) -> dict[str, str]:
    return dict(json.loads(target.objects()["staticfiles.json"])["paths"])
