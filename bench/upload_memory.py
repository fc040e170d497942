"""Peak memory for the worst files the platform accepts (and a few it refuses): what checking
one costs the web process and what analysing it costs a worker, each in a fresh process,
measured by the kernel (VmHWM after /proc/self/clear_refs, so Pillow/OpenCV/zlib/TensorFlow
memory counts), as the growth over the same process just before the file.

    .venv/bin/python bench/upload_memory.py            # Linux only; ~2 min, loads the model

Rows: web = workers.imaging.inspect_scan (what the upload path runs per file); worker =
decode_gray_bounded + prepare (the serving preprocessing); worker (before) = the same on the
full-size decode, as workers ran before the bounded copy; worker analyze = the whole
`get_analyzer().analyze(bytes)` with the shipped model (after one ordinary scan).
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


def main() -> int:
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
