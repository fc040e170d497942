"""Where scans, heatmaps and overlays live: an S3 bucket, or the local filesystem.

With `S3_ENDPOINT_URL` and `S3_BUCKET` set, Django's default storage is django-storages' S3
backend (any S3 server: AWS, SeaweedFS, MinIO; credentials `AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY`), so web and workers on different hosts share no disk. Otherwise files
go under MEDIA_ROOT (`make run` stays zero-setup). Objects are private either way: nothing is
ever served from MEDIA_URL or from a public bucket URL; apps/scans/views.py streams each file
after checking the clinic (docs/operations.md, "Object storage", says why streaming).
"""

from typing import Any

from .env import env


def s3_storage(
    *, endpoint_url: str, bucket: str, access_key: str = "", secret_key: str = "", region: str = "", prefix: str = ""
) -> dict[str, Any]:
    """A STORAGES entry for django-storages' S3 backend (one home for its options: the settings
    and the tests that switch storage at run time both build it here)."""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "endpoint_url": endpoint_url,
            "bucket_name": bucket,
            "location": prefix.strip("/"),  # key prefix: several deployments (or test runs) per bucket
            "access_key": access_key or None,
            "secret_key": secret_key or None,
            "region_name": region or "us-east-1",
            "default_acl": "private",
            # Never a second object with a suffixed name: names are generated and unique already.
            "file_overwrite": False,
            # Signed URLs only (never a public one), and short-lived if ever handed out.
            "querystring_auth": True,
            "querystring_expire": 30,
            "signature_version": "s3v4",
            "addressing_style": "path",  # SeaweedFS/MinIO serve buckets by path, not by host name
            "object_parameters": {"CacheControl": "no-store"},
        },
    }


S3_ENDPOINT_URL = env.str("S3_ENDPOINT_URL", default="")
S3_BUCKET = env.str("S3_BUCKET", default="")
MEDIA_STORAGE = (
    s3_storage(
        endpoint_url=S3_ENDPOINT_URL,
        bucket=S3_BUCKET,
        access_key=env.str("AWS_ACCESS_KEY_ID", default=""),
        secret_key=env.str("AWS_SECRET_ACCESS_KEY", default=""),
        region=env.str("AWS_S3_REGION_NAME", default=""),
        prefix=env.str("S3_PREFIX", default=""),
    )
    if S3_ENDPOINT_URL and S3_BUCKET
    else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
)
# With S3: redirect the clinic-checked media views to a presigned URL (valid 30 s) instead of
# streaming the object through the web process. Off by default: streaming keeps the object store
# off the browsers' network and `no-store` on every response (docs/operations.md has the figures).
MEDIA_PRESIGNED_REDIRECT = env.bool("MEDIA_PRESIGNED_REDIRECT", default=False)
