from __future__ import annotations

import os

# Never let the machine's AWS credentials or config reach boto3.
for _name in [name for name in os.environ if name.startswith("AWS_")]:
    del os.environ[_name]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

from tests.fixtures import *  # noqa: E402,F403
