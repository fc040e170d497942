"""A real Orthanc (Debian's `orthanc` + `orthanc-dicomweb`) for the end-to-end tests: started
here on free ports in a folder of its own with a generated configuration (never the system
service), stopped and started again on the same storage (a PACS restart)."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from tests.testkit.dicomnet import free_port

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class Orthanc:
    def __init__(self, folder: Path, *, modalities: dict[str, tuple[str, str, int]], ae_title: str = "ORTHANC") -> None:
        binary = shutil.which("Orthanc")
        if binary is None:
            raise RuntimeError("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
        self.binary, self.folder, self.ae_title = binary, folder, ae_title
        self.dicom_port, self.http_port = free_port(), free_port()
        config = {
            "Name": "E2E", "DicomAet": ae_title, "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
            "DicomModalities": {name: list(entry) for name, entry in modalities.items()},
            "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "DicomScuTimeout": 30,
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "StableAge": 1,
        }  # fmt: skip
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=2))
        self.log = folder / "orthanc.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 60.0) -> Orthanc:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, str(self.config)], cwd=self.folder, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/system", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Orthanc did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # REST helpers
    def upload(self, data: bytes) -> dict[str, Any]:
        response = requests.post(f"{self.url}/instances", data=data, timeout=30)
        response.raise_for_status()
        return response.json()

    def send_study(self, modality: str, study_id: str) -> requests.Response:
        """C-STORE a study to a configured modality (Orthanc is the SCU)."""
        return requests.post(f"{self.url}/modalities/{modality}/store", data=study_id, timeout=120)

    def study_id(self, study_instance_uid: str) -> str | None:
        found = requests.post(f"{self.url}/tools/lookup", data=study_instance_uid, timeout=10).json()
        return next((item["ID"] for item in found if item["Type"] == "Study"), None)

    def instances(self, study_id: str) -> list[dict[str, Any]]:
        """Each instance of the study: its tags (simplified) and its file."""
        out = []
        for instance in requests.get(f"{self.url}/studies/{study_id}/instances", timeout=30).json():
            tags = requests.get(f"{self.url}/instances/{instance['ID']}/simplified-tags", timeout=30).json()
            data = requests.get(f"{self.url}/instances/{instance['ID']}/file", timeout=30).content
            out.append({"tags": tags, "file": data})
        return out
