from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# Never let the machine's AWS credentials or config reach boto3.
for _name in [name for name in os.environ if name.startswith("AWS_")]:
    del os.environ[_name]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

from tests.fixtures import *  # noqa: E402,F403

if TYPE_CHECKING:
    from tests.azuriteserver import AzuriteServer
    from tests.gcsserver import GCSServer


# The servers each family's tests share, started once per session when a test first asks for one.


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    from tests.gcsserver import GCSServer

    server = GCSServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    from tests.azuriteserver import AzuriteServer

    server = AzuriteServer()
    yield server
    server.stop()
