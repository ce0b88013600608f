"""One deploy in a process of its own, for the concurrent-deploy tests.

    python -m tests.deploy_process --endpoint URL --bucket NAME --static DIR [--static DIR...]
        [--barrier DIR --parties N] [--strategy PATH] [--cache DIR]

Configures Django for the test S3 server, waits (with ``--barrier``) until
``--parties`` processes are ready so that they start together, runs
collectstatic (by default with the manifest strategy) and prints its output.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.fixtures import ACCESS_KEY, REGION, SECRET_KEY


def configure(args: argparse.Namespace) -> None:
    import django
    from botocore.config import Config
    from django.conf import settings

    cache = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "TIMEOUT": None}
    if args.cache:
        cache = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": args.cache}
    settings.configure(
        SECRET_KEY="collectfast-deploy-process",
        INSTALLED_APPS=["collectfast", "django.contrib.staticfiles"],
        STATIC_URL="/static/",
        STATIC_ROOT=tempfile.mkdtemp(),
        STATICFILES_DIRS=args.static,
        CACHES={"default": cache},
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": args.bucket,
                    "endpoint_url": args.endpoint,
                    "access_key": ACCESS_KEY,
                    "secret_key": SECRET_KEY,
                    "region_name": REGION,
                    "client_config": Config(retries={"total_max_attempts": 1}),
                },
            },
        },
        COLLECTFAST_STRATEGY=args.strategy,
        COLLECTFAST_MANIFEST_MODE=args.mode,
        COLLECTFAST_THREADS=args.threads,
        COLLECTFAST_READ_TIMEOUT=args.read_timeout,
    )
    django.setup()


def wait_for_parties(barrier: Path, parties: int) -> None:
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(barrier.iterdir())) < parties:
        if time.monotonic() > deadline:
            sys.exit("the other deploys never got ready")
        time.sleep(0.005)


def main() -> None:
    # As if started from a terminal: a test runner started in the background (nohup, a CI step with `&`)
    # passes SIGINT down ignored, and the tests that send it would then test nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--static", required=True, action="append")
    parser.add_argument("--strategy", default="collectfast.strategies.manifest.S3ManifestStrategy")
    parser.add_argument("--cache", help="a FileBasedCache folder (default: a per-process cache)")
    parser.add_argument("--verbosity", type=int, default=1)
    parser.add_argument("--mode", default="verified")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--read-timeout", type=float, default=10.0)
    parser.add_argument("--barrier", type=Path)
    parser.add_argument("--parties", type=int, default=1)
    args = parser.parse_args()
    configure(args)
    from django.core.management import call_command

    if args.barrier:
        wait_for_parties(args.barrier, args.parties)
    call_command("collectstatic", interactive=False, verbosity=args.verbosity, stdout=sys.stdout, stderr=sys.stderr)


if __name__ == "__main__":
    main()
