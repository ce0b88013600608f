"""Deploy example/ into a local S3-compatible server twice and show both summaries.

Run it with ``make demo``. The server (moto, on 127.0.0.1) lives only as long as the demo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.s3server import S3Server  # noqa: E402


def collectstatic(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT / "example",
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"collectstatic failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def main() -> None:
    server = S3Server()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            EXAMPLE_S3_ENDPOINT=server.endpoint_url,
            EXAMPLE_BUCKET="example-static",
            EXAMPLE_ACCESS_KEY="demo",
            EXAMPLE_SECRET_KEY="demo-secret",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_DEFAULT_REGION="us-east-1",
        )
        client = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id="demo",
            aws_secret_access_key="demo-secret",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="example-static")
        print(f"S3-compatible server on {server.endpoint_url}, bucket 'example-static'.\n")
        print("First deploy (empty bucket):")
        print("  " + collectstatic(env))
        print("\nSecond deploy (nothing changed, fresh process so no warm cache):")
        print("  " + collectstatic(env))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
