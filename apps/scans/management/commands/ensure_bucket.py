"""Create the S3 bucket the settings name if it does not exist yet (run once per deploy, before
`migrate`); nothing to do when media is on the local filesystem."""

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the media bucket (S3_BUCKET) on S3_ENDPOINT_URL if it is missing."

    def handle(self, *args: object, **options: object) -> None:
        storage = storages["default"]
        if isinstance(storage, FileSystemStorage):
            self.stdout.write(f"media on the local filesystem ({settings.MEDIA_ROOT}): no bucket needed")
            return
        client = storage.connection.meta.client
        bucket = storage.bucket_name
        try:
            client.head_bucket(Bucket=bucket)
            self.stdout.write(f"bucket {bucket} exists")
        except client.exceptions.ClientError:
            client.create_bucket(Bucket=bucket)
            self.stdout.write(f"bucket {bucket} created")
