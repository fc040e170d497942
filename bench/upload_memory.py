"""Peak memory for the worst files the platform accepts (and a few it refuses): what checking
one costs the web process and what analysing it costs a worker, each in a fresh process,
measured by the kernel (VmHWM after /proc/self/clear_refs, so Pillow/OpenCV/zlib/TensorFlow
memory counts), as the growth over the same process just before the file.

    .venv/bin/python bench/upload_memory.py            # Linux only; ~2 min, loads the model
    .venv/bin/python bench/upload_memory.py --dicom-only [--with-old-path]   # the DICOM table alone

Rows: web = mri.intake.decode.inspect_scan (what the upload path runs per file); worker =
decode_gray_bounded + prepare (the serving preprocessing); worker (before) = the same on the
full-size decode, as workers ran before the bounded copy; worker analyze = the whole
`get_analyzer().analyze(bytes)` with the shipped model (after one ordinary scan).

DICOM table (issue 15: decompression bombs; issue 19: a study is a unit of work): what the
web request runs on a DICOM upload, `apps.scans.ingest.check_uploads` (headers only, the whole
request budgeted before anything is decoded), on the bomb corpus (JPEG-LS files of 16 and 32
frames at 4096², a zip of 60 of them = 960 frames, a zip of 40 4-frame 2048² files under the
per-file budget but over the request's) and on a real 200-slice zipped series (accepted: its
time is the request's share before the originals are stored). `--with-old-path` adds what the
request used to do with the 16-frame bomb (decode every frame: `mri.intake.dicom.decode_dicom`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.testkit.hostile import hostile_corpus, peak_memory, worst_accepted_jpeg, worst_accepted_png  # noqa: E402
from tests.testkit.scans import real_scan_bytes  # noqa: E402

_ANALYZE = r"""
import json, sys
from pathlib import Path
from workers.runtime import get_analyzer

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

analyzer = get_analyzer()
analyzer.analyze(Path(sys.argv[1]).read_bytes())
for path in sys.argv[2:]:
    data = Path(path).read_bytes()
    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS")
    result = analyzer.analyze(data)
    peak = status("VmHWM")
    print(json.dumps({"name": Path(path).name, "growth_mib": round((peak - before) / 1024, 1),
                      "peak_mib": round(peak / 1024, 1), "heatmap": list(result.heatmap.shape)}))
"""


def _analyze(files: dict[str, bytes], workdir: Path) -> dict[str, dict]:
    warm = workdir / "warm.jpg"
    warm.write_bytes(real_scan_bytes("glioma"))
    paths = []
    for name, data in files.items():
        (workdir / name).write_bytes(data)
        paths.append(str(workdir / name))
    out = subprocess.run(  # noqa: S603 (fixed argv)
        [sys.executable, "-c", _ANALYZE, str(warm), *paths], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800, check=True,
    )  # fmt: skip
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {row.pop("name"): row for row in rows}


_WEB_DICOM = r"""
import json, os, sys, time
from pathlib import Path
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic_platform.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")
import django
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from apps.scans.ingest import UploadRefused, check_uploads
from mri.intake.dicom import decode_dicom

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

step, warm, paths = sys.argv[1], Path(sys.argv[2]).read_bytes(), sys.argv[3:]
check_uploads([SimpleUploadedFile("warm.dcm", warm)])  # libraries warmed up on an ordinary slice
for path in paths:
    data = Path(path).read_bytes()
    Path("/proc/self/clear_refs").write_text("5")
    before, start = status("VmRSS"), time.perf_counter()
    try:
        if step == "old":
            outcome = f"decoded {len(decode_dicom(data))} frames"
        else:
            outcome = f"accepted: {check_uploads([SimpleUploadedFile(Path(path).name, data)]).slices} slices"
    except UploadRefused as exc:
        outcome = "refused: " + exc.problems[0]
    seconds, peak = time.perf_counter() - start, status("VmHWM")
    print(json.dumps({"name": Path(path).name, "growth_mib": round((peak - before) / 1024, 1),
                      "seconds": round(seconds, 2), "outcome": outcome}))
"""


def _dicom_web(files: dict[str, bytes], workdir: Path, step: str = "web") -> dict[str, dict]:
    from tests.testkit import dicom as dicomdata

    warm = workdir / "warm.dcm"
    warm.write_bytes(dicomdata.training_series(1)[0])
    paths = []
    for name, data in files.items():
        (workdir / name).write_bytes(data)
        paths.append(str(workdir / name))
    out = subprocess.run(  # noqa: S603 (fixed argv)
        [sys.executable, "-c", _WEB_DICOM, step, str(warm), *paths], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {row.pop("name"): row for row in rows}


def dicom_table(*, with_old_path: bool) -> None:
    from tests.testkit import dicom as dicomdata

    corpus = {
        "jpegls-16x4096.dcm": dicomdata.jpegls_bomb(frames=16),
        "jpegls-32x4096.dcm": dicomdata.jpegls_bomb(frames=32),
        "60-bombs-960-frames.zip": dicomdata.bomb_zip(60),
        "40x4-frames-2048.zip": dicomdata.bomb_zip(40, frames=4, side=2048),
        "series-200-slices.zip": dicomdata.series_zip(dicomdata.training_series(200)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        web = _dicom_web(corpus, Path(tmp))
        bomb = {"jpegls-16x4096.dcm": corpus["jpegls-16x4096.dcm"]}
        old = _dicom_web(bomb, Path(tmp), "old") if with_old_path else {}
    print("| DICOM upload | size | web request: check (MiB) | seconds | outcome |")
    print("|---|---:|---:|---:|---|")
    for name, data in corpus.items():
        row = web[name]
        print(f"| {name} | {len(data) / 2**10:.0f} KB | +{max(0.0, row['growth_mib']):.0f} | {row['seconds']:.2f} "
              f"| {row['outcome'][:110]} |")  # fmt: skip
    for name, row in old.items():
        print(f"| {name}, as the request did before (decode every frame) | {len(corpus[name]) / 2**10:.0f} KB "
              f"| +{max(0.0, row['growth_mib']):.0f} | {row['seconds']:.2f} | {row['outcome']} |")  # fmt: skip


def main() -> int:
    if "--dicom-only" in sys.argv:
        dicom_table(with_old_path="--with-old-path" in sys.argv)
        return 0
    accepted = {"worst-40mpx-rgba.png": worst_accepted_png(), "worst-16mpx-progressive.jpg": worst_accepted_jpeg(),
                "ordinary-scan.jpg": real_scan_bytes("glioma", 1)}  # fmt: skip
    bombs = {f.name: f.data for f in hostile_corpus() if f.name in ("pixel-stream-bomb.png", "ztxt-bomb.png",
                                                                     "scan-bomb.jpg", "icc-bomb.png")}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        web = peak_memory({**accepted, **bombs}, "web", work)
        worker = peak_memory(accepted, "worker", work)
        before = peak_memory(accepted, "worker-unbounded", work)
        analyze = _analyze(accepted, work)
    print("| file | size | web: check (MiB) | worker: preprocess (MiB) | worker before (MiB) | worker analyze (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, data in {**accepted, **bombs}.items():
        def growth(row: dict) -> str:
            return f"+{max(0.0, row['growth_mib']):.0f}"

        row = [name, f"{len(data) / 2**20:.1f} MB", growth(web[name])]
        if name in accepted:
            row += [growth(worker[name]), growth(before[name]),
                    f"{growth(analyze[name])} (peak {analyze[name]['peak_mib']:.0f})"]  # fmt: skip
        else:
            row += ["refused: " + web[name]["outcome"].removeprefix("refused: ")[:60], "", ""]
        print("| " + " | ".join(row) + " |")
    print()
    dicom_table(with_old_path="--with-old-path" in sys.argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
