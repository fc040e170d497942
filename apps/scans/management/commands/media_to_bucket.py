"""Copy media written to local disk (MEDIA_ROOT) into the S3 bucket the settings name, once
S3_ENDPOINT_URL and S3_BUCKET are set. Safe to run again: objects already there are skipped."""

from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.scans.media import media_copy_to_storage


class Command(BaseCommand):
    help = "Copy local media (MEDIA_ROOT, or --source) into the configured object storage."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", type=Path, default=None, help="folder to copy (default MEDIA_ROOT)")
        parser.add_argument("--dry-run", action="store_true", help="count what would be copied")

    def handle(self, *args: object, source: Path | None = None, dry_run: bool = False, **options: object) -> None:
        source = Path(source or settings.MEDIA_ROOT)
        storage = storages["default"]
        if isinstance(storage, FileSystemStorage):
            raise CommandError("Storage is the local filesystem: set S3_ENDPOINT_URL and S3_BUCKET first.")
        if not source.is_dir():
            raise CommandError(f"{source} is not a folder.")
        report = media_copy_to_storage(source=source, storage=storage, dry_run=dry_run)
        for problem in report.problems:
            self.stderr.write(problem)
        verb = "would be copied" if dry_run else "copied"
        problems = len(report.problems)
        self.stdout.write(f"{report.copied} {verb}, {report.already_there} already there, {problems} problems")
