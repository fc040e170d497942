"""`manage.py dicom_receiver`: the C-STORE SCP (apps/dicomnet/receiver.py) in the foreground."""

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.dicomnet.receiver import serve


class Command(BaseCommand):
    help = "Receive DICOM studies from the registered nodes (C-STORE SCP) until stopped."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=None, help="default: DICOM_PORT")
        parser.add_argument("--address", default=None, help="default: DICOM_BIND_ADDRESS")

    def handle(self, *args, port: int | None = None, address: str | None = None, **options) -> None:
        self.stdout.write(
            f"DICOM receiver {settings.DICOM_AE_TITLE} on "
            f"{address or settings.DICOM_BIND_ADDRESS}:{port or settings.DICOM_PORT}",
        )
        self.stdout.flush()
        serve(address=address, port=port, block=True)
