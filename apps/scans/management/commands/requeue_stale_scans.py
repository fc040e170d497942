"""Publish again scans stuck in queued (lost message, broker down at upload) or in
processing past the hard time limit (dead worker). Beat runs the same as a periodic task."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser

from apps.scans.services import scans_requeue_stale


class Command(BaseCommand):
    help = "Re-enqueue scans stuck in queued longer than --minutes (default SCAN_REQUEUE_AFTER_MINUTES)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--minutes", type=float, default=None)

    def handle(self, *args: object, minutes: float | None = None, **options: object) -> None:
        older_than = timedelta(minutes=minutes) if minutes is not None else None
        report = scans_requeue_stale(older_than=older_than)
        self.stdout.write(f"requeued={report.requeued} published={report.published} failed={report.failed}")
