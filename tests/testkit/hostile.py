"""A corpus of hostile (and awkward but legitimate) uploads, built from a real scan: what
tests/apps/test_hostile_uploads.py refuses one by one, and what bench/upload_memory.py
measures. No Django import.

Each `HostileFile` says what must happen: `refused` with a message containing `message`, or
accepted (a 16-bit scan, a large but valid scan)."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.testkit.scans import real_scan_bytes

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class HostileFile:
    name: str
    data: bytes
    message: str | None  # None: accepted
    content_type: str = "image/png"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_from_parts(width: int, height: int, rows: bytes, *, depth: int = 8, color: int = 0,
                   extra: tuple[bytes, ...] = (), level: int = 6) -> bytes:  # fmt: skip
    """A PNG assembled by hand: any header, any pixel stream, extra chunks before the pixels."""
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + b"".join(extra)
        + _chunk(b"IDAT", zlib.compress(rows, level)) + _chunk(b"IEND", b"")
    )  # fmt: skip


def _scan_image(size: int = 256) -> Image.Image:
    with Image.open(io.BytesIO(real_scan_bytes("meningioma"))) as image:
        return image.convert("L").resize((size, size))


def _png(image: Image.Image, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **params)
    return out.getvalue()


def _jpeg(image: Image.Image, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", **params)
    return out.getvalue()


def _scan_bomb_jpeg(copies: int = 200) -> bytes:
    """A progressive JPEG whose last scan is repeated `copies` times (each one more full pass)."""
    data = _jpeg(_scan_image().convert("RGB"), progressive=True, quality=90)
    last_sos = data.rfind(b"\xff\xda")
    scan = data[last_sos:-2]  # the last SOS segment and its entropy-coded data, up to EOI
    return data[:-2] + scan * copies + b"\xff\xd9"


def _with_jpeg_comment(data: bytes, comment: bytes) -> bytes:
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]


def _animated_png() -> bytes:
    frames = [_scan_image(128), _scan_image(128).rotate(90)]
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:])
    return out.getvalue()


def _oversized_stream_png() -> bytes:
    """A 100×100 header over a pixel stream that inflates to 64 MB: a classic zip bomb in a PNG."""
    return png_from_parts(100, 100, b"\0" * (64 << 20), level=9)


def _zip(members: dict[str, bytes | int], level: int = 1) -> bytes:
    """A zip archive; an int member is that many zero bytes, written in 1 MiB pieces."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, content in members.items():
            with archive.open(name, "w", force_zip64=True) as member:
                if isinstance(content, int):
                    for _ in range(content >> 20):
                        member.write(bytes(1 << 20))
                else:
                    member.write(content)
    return out.getvalue()


def zip_corpus() -> list[HostileFile]:
    """Zip bombs and nested zips, for the zipped-DICOM-study upload (apps/scans/ingest.py)."""
    scan = real_scan_bytes("glioma")
    zipped = "application/zip"
    return [
        HostileFile("total-bomb.zip", _zip({f"IM{i:02d}.dcm": 24 << 20 for i in range(22)}), "at most 512 MB", zipped),
        HostileFile("member-bomb.zip", _zip({"IM0001": 64 << 20}), "the limit per file is 25 MB", zipped),
        HostileFile("many-members.zip", _zip({f"IM{i:05d}": b"x" for i in range(2001)}), "at most 2000", zipped),
        HostileFile("nested.zip", _zip({"inner.zip": _zip({"IM0001": scan})}), "a zip inside a zip", zipped),
    ]


def hostile_corpus() -> list[HostileFile]:
    scan = real_scan_bytes("glioma")
    small = _scan_image()
    html = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
    gray16 = Image.fromarray(np.asarray(small, dtype=np.uint16) * 257)  # I;16
    head, rest = _png(small)[:33], _png(small)[33:]  # signature + IHDR, then the rest

    def with_chunk(kind: bytes, body: bytes) -> bytes:
        return head + _chunk(kind, body) + rest

    gif = io.BytesIO()
    small.save(gif, format="GIF")
    bad_crc = bytearray(_png(small))
    bad_crc[40] ^= 0xFF
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    big_progressive = _jpeg(small.resize((4600, 4600)), progressive=True)
    metadata = "MB of metadata"
    jpeg = "image/jpeg"
    return [
        # Pillow itself stops a header this large at open.
        HostileFile("side-bomb.png", png_from_parts(100_000, 100_000, b"\0" * 1000), "too many pixels"),
        HostileFile("area-bomb.png", png_from_parts(8000, 8000, b"\0" * 1000), "at most 40 Mpx"),
        HostileFile("scan-bomb.jpg", _scan_bomb_jpeg(), "progressive scans", jpeg),
        HostileFile("big-progressive.jpg", big_progressive, "progressive JPEGs are accepted up to 16 Mpx", jpeg),
        HostileFile("text-chunk.png", with_chunk(b"tEXt", b"Comment\0" + b"A" * (3 << 20)), metadata),
        HostileFile("ztxt-bomb.png", with_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * (64 << 20))), metadata),
        HostileFile("icc-bomb.png", with_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * (64 << 20))), metadata),
        HostileFile("pixel-stream-bomb.png", _oversized_stream_png(), "more pixel data than its size"),
        HostileFile("polyglot-appended.jpg", scan + html, "after the end of the image", jpeg),
        HostileFile("polyglot-comment.jpg", _with_jpeg_comment(scan, html), "web page markup", jpeg),
        HostileFile("polyglot-text.png", with_chunk(b"tEXt", b"Comment\0" + html), "web page markup"),
        HostileFile("image.svg.png", svg, "not a JPEG or PNG"),
        HostileFile("page.html.png", html, "not a JPEG or PNG"),
        HostileFile("cmyk.jpg", _jpeg(small.convert("CMYK")), "CMYK", jpeg),
        HostileFile("bad-crc.png", bytes(bad_crc), "checksum"),
        HostileFile("truncated.png", _png(small)[:-200], "truncated"),
        HostileFile("truncated.jpg", scan[: len(scan) // 2], "truncated", jpeg),
        HostileFile("animated.png", _animated_png(), "Animated PNGs"),
        HostileFile("gif-as.png", gif.getvalue(), "files are not accepted"),
        # Awkward but legitimate: accepted.
        HostileFile("scan-16bit.png", _png(gray16), None),
        HostileFile("scan-rgba.png", _png(small.convert("RGBA")), None),
    ]


def worst_accepted_png(width: int = 8000, height: int = 5000) -> bytes:
    """The largest PNG accepted (40 Mpx, 8-bit RGBA: the widest rows), a real scan stretched."""
    gray = _scan_image(1024).resize((width, height))
    return _png(Image.merge("RGBA", [gray, gray, gray, Image.new("L", gray.size, 255)]), compress_level=1)


def worst_accepted_jpeg(side: int = 4000) -> bytes:
    """The largest progressive JPEG accepted (16 Mpx, colour, no chroma subsampling)."""
    return _jpeg(_scan_image(1024).resize((side, side)).convert("RGB"), progressive=True, subsampling=0, quality=95)


_MEASURE = r"""
import json, sys
from pathlib import Path
from mri.intake import decode
from mri.model.preprocessing import prepare

def status(field):  # kB, from the kernel: native (Pillow, OpenCV, zlib) memory counts too
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

step, warm, paths = sys.argv[1], Path(sys.argv[2]).read_bytes(), sys.argv[3:]
call = {"web": decode.inspect_scan, "worker": lambda d: prepare(decode.decode_gray_bounded(d), 224),
        "worker-unbounded": lambda d: prepare(decode.decode_gray(d), 224)}[step]
call(warm)  # libraries warmed up on an ordinary scan
for path in paths:
    data = Path(path).read_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
    before = status("VmRSS")
    try:
        call(data)
        outcome = "accepted"
    except decode.ScanDecodeError as exc:
        outcome = "refused: " + exc.args[0]
    peak = status("VmHWM")
    del data
    print(json.dumps({"name": Path(path).name, "growth_mib": round((peak - before) / 1024, 1),
                      "peak_mib": round(peak / 1024, 1), "outcome": outcome}))
"""


def peak_memory(files: dict[str, bytes], step: str, workdir: Path) -> dict[str, dict]:
    """Peak resident memory a process gains checking (`web`: inspect_scan) or preparing
    (`worker`: the serving preprocessing; `worker-unbounded`: the same on the full-size decode)
    each file, over what it held just before: the kernel's high-water mark (VmHWM, reset through
    /proc/self/clear_refs before each file), so native (Pillow, OpenCV, zlib) memory counts too.
    One fresh process, warmed up on an ordinary scan first. Linux only."""
    warm = workdir / "warm.jpg"
    warm.write_bytes(real_scan_bytes("glioma"))
    paths = []
    for name, data in files.items():
        path = workdir / name
        path.write_bytes(data)
        paths.append(str(path))
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, step, str(warm), *paths],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {row.pop("name"): row for row in rows}
