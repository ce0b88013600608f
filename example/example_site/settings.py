"""A minimal project deploying its static files with collectfast, to S3, Google Cloud Storage or Azure.

Each cloud's block below is what a project writes for it: copy one, put your
bucket (or container) name in, and install the extra it names. The
environment variable EXAMPLE_CLOUD (s3, gcs or azure; ``make demo`` sets it)
picks the block. The last block is the demo's only: it points the storage
at a local server on 127.0.0.1, which a real project does not need.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "collectfast-example"
DEBUG = False

INSTALLED_APPS = [
    "collectfast",  # before django.contrib.staticfiles, so collectstatic is collectfast's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
COLLECTFAST_THREADS = 10  # the default; upload workers

CLOUD = os.environ.get("EXAMPLE_CLOUD", "s3")

if CLOUD == "s3":
    # pip install "collectfast[s3]"
    # Credentials as boto3 finds them: an IAM role, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": "example-static", "location": "static"},
        },
    }
elif CLOUD == "gcs":
    # pip install "collectfast[gcloud]"
    # Credentials: Application Default Credentials, or the "credentials" and "project_id" OPTIONS.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {
            "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
            "OPTIONS": {"bucket_name": "example-static", "location": "static"},
        },
    }
elif CLOUD == "azure":
    # pip install "collectfast[azure]"
    # Credentials: account_key, or connection_string, sas_token or token_credential instead.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {
            "BACKEND": "storages.backends.azure_storage.AzureStorage",
            "OPTIONS": {
                "account_name": "mystaticaccount",
                "account_key": os.environ.get("AZURE_ACCOUNT_KEY"),
                "azure_container": "example-static",
                "location": "static",
            },
        },
    }
else:
    raise ValueError(f"EXAMPLE_CLOUD must be s3, gcs or azure, not {CLOUD!r}")

# The demo only (make demo sets these variables): each cloud's local server on 127.0.0.1, throwaway credentials.
if CLOUD == "s3" and "EXAMPLE_S3_ENDPOINT" in os.environ:  # moto
    STORAGES["staticfiles"]["OPTIONS"].update(
        endpoint_url=os.environ["EXAMPLE_S3_ENDPOINT"], access_key="demo", secret_key="demo-secret"
    )
elif CLOUD == "gcs" and "STORAGE_EMULATOR_HOST" in os.environ:  # the GCS emulator; google-cloud-storage reads it
    from google.auth.credentials import AnonymousCredentials

    STORAGES["staticfiles"]["OPTIONS"].update(project_id="demo", credentials=AnonymousCredentials())
elif CLOUD == "azure" and "EXAMPLE_AZURE_CONNECTION_STRING" in os.environ:  # Azurite's development account
    STORAGES["staticfiles"]["OPTIONS"] = {
        "connection_string": os.environ["EXAMPLE_AZURE_CONNECTION_STRING"],
        "azure_container": "example-static",
        "location": "static",
    }
