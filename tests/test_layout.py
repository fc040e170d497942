"""Where code runs (issue 17): the import contracts hold, and the web process never loads the
model's libraries."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mri", "apps", "workers", "training", "clinic_platform")


def test_import_contracts_are_kept():
    """pyproject.toml [tool.importlinter]: mri/ is Django-free, the web never loads the runtime,
    training builds on mri/ only, each app's views over services over models."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# What a web process imports: the settings and apps, the URLconf (every view and API), the scan
# services, and the upload intake (decode, content checks, DICOM).
_WEB_SIDE = """
import json, sys
import django
django.setup()
import clinic_platform.urls, clinic_platform.wsgi
import apps.scans.services, apps.scans.ingest, apps.dicomnet.intake, apps.web.forms
import mri.intake.decode, mri.intake.image_content, mri.intake.dicom, mri.intake.dicom.frames, mri.card
print(json.dumps(sorted(name for name in ("tensorflow", "keras", "cv2") if name in sys.modules)))
"""


def test_the_web_side_loads_no_tensorflow_or_opencv():
    """In a fresh interpreter, so nothing another test imported counts: TensorFlow, Keras and
    OpenCV stay in the workers (the content checks shrink in NumPy, mri.intake.gray.area_shrink;
    heatmap PNGs are encoded where a worker stores them)."""
    env = {"DJANGO_SETTINGS_MODULE": "clinic_platform.test_settings", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", _WEB_SIDE], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not loaded & {"tensorflow", "keras", "cv2"}, loaded


def test_no_import_cycles_between_modules():
    """No module reaches, through any chain of imports (lazy ones included), a module that
    imports it: the web publishes tasks by name, the audit middleware and services share the
    request through apps/audit/request.py. A package importing its own submodules is not a cycle."""
    import grimp

    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            related = imported.startswith(importer + ".") or importer.startswith(imported + ".")
            if not related and graph.chain_exists(importer=imported, imported=importer):
                cycles.append(f"{importer} -> {imported} -> ... -> {importer}")
    assert not cycles, "\n".join(cycles)
