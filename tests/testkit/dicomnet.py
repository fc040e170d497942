"""Helpers for the DICOM network tests (issue 18): a real C-STORE SCP that keeps what it
receives (a stand-in PACS for the outbox tests; Orthanc plays the PACS end to end), and the
dciodvfy validator (Debian's dicom3tools)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StoreScp:
    """A C-STORE SCP on 127.0.0.1:`port` (AE `ae_title`) that keeps every dataset it gets."""

    def __init__(self, port: int, ae_title: str = "TEST_PACS") -> None:
        self.port, self.ae_title = port, ae_title
        self.received: list[Dataset] = []
        self._server = None

    def _store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0x0000

    def start(self) -> StoreScp:
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])  # fmt: skip
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StoreScp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dciodvfy(ds: Dataset) -> tuple[list[str], str]:
    """(the error lines, the whole output) of dciodvfy on `ds` written as a Part 10 file."""
    tool = shutil.which("dciodvfy")
    assert tool, "dciodvfy (Debian's dicom3tools) is not installed: apt-get install dicom3tools"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "object.dcm"
        ds.save_as(path, enforce_file_format=True)
        run = subprocess.run([tool, "-new", str(path)], capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    return [line for line in output.splitlines() if line.startswith("Error")], output
