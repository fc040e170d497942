"""The development out-of-distribution corpus: images that are not brain MRI slices, built from
what Python packages ship or can draw offline, at evaluation time (nothing big is committed).

Sources are grouped in families, and whole families are held out: the held-out ones are never
used to choose the gate's score or threshold, only reported, so their figures estimate how the
gate does on kinds of images it was never tuned on. Every image is encoded as the PNG or JPEG
a user would upload, and goes through the same upload check and serving path as a scan.

Development families: photos, charts, ct_nm (CT, nuclear medicine, segmentation, from
pydicom's test files), phantoms (Shepp-Logan and random ellipse heads), noise.
Held-out families: scientific (microscopy, astronomy, retina, terrain, logos), documents
(text pages, forms and application screenshots drawn with Pillow), ultrasound_body (ultrasound
and a body MR from pydicom's files), faces, patterns (gradients, stripes, checkerboards).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mri.card import ModelCard

DEVELOPMENT_FAMILIES = ("photos", "charts", "ct_nm", "phantoms", "noise")
HELD_OUT_FAMILIES = ("scientific", "documents", "ultrasound_body", "faces", "patterns")


@dataclass(frozen=True)
class OodImage:
    family: str
    name: str
    data: bytes  # an encoded PNG or JPEG, as uploaded

    @property
    def held_out(self) -> bool:
        return self.family in HELD_OUT_FAMILIES


def build_corpus(families: tuple[str, ...] = DEVELOPMENT_FAMILIES + HELD_OUT_FAMILIES) -> list[OodImage]:
    """Every image of the given families, deterministic (fixed seeds)."""
    builders: dict[str, Callable[[], Iterator[tuple[str, np.ndarray]]]] = {
        "photos": _photos,
        "charts": _charts,
        "ct_nm": lambda: _dicom_images(CT_NM_FILES),
        "phantoms": _phantoms,
        "noise": _noise,
        "scientific": _scientific,
        "documents": _documents,
        "ultrasound_body": lambda: _dicom_images(ULTRASOUND_BODY_FILES),
        "faces": _faces,
        "patterns": _patterns,
    }
    corpus = []
    for family in families:
        for index, (name, pixels) in enumerate(builders[family]()):
            corpus.append(OodImage(family, name, encode(pixels, jpeg=index % 3 == 2)))
    return corpus


def encode(pixels: np.ndarray, jpeg: bool = False) -> bytes:
    """uint8 gray or RGB(A) → PNG (or JPEG quality 90) bytes."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if jpeg and image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG" if jpeg else "PNG", quality=90)
    return out.getvalue()


def to_uint8(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    low = float(np.percentile(values, 0.5)) if low is None else low
    high = float(np.percentile(values, 99.5)) if high is None else high
    scaled = (values - low) / max(high - low, 1e-9)
    return (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)


def _variants(name: str, pixels: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    """The image, in gray, a random crop and a rotated copy: what a user might upload by mistake."""
    yield name, pixels
    gray = pixels if pixels.ndim == 2 else np.asarray(Image.fromarray(pixels).convert("L"))
    yield f"{name}-gray", gray
    height, width = gray.shape[:2]
    if min(height, width) >= 160:
        side = int(min(height, width) * rng.uniform(0.55, 0.8))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        yield f"{name}-crop", pixels[top : top + side, left : left + side]
    yield f"{name}-rot90", np.rot90(gray).copy()


# --- development families ------------------------------------------------------------------


def _photos() -> Iterator[tuple[str, np.ndarray]]:
    import matplotlib.cbook
    from skimage import data

    rng = np.random.default_rng(1)
    names = ("astronaut", "camera", "chelsea", "coffee", "rocket", "clock", "coins", "brick", "grass", "gravel")
    for name in names:
        yield from _variants(name, np.asarray(getattr(data, name)()), rng)
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        yield from _variants("grace_hopper", np.asarray(Image.open(handle).convert("RGB")), rng)


def _figure_pixels(draw: Callable[[object], None], dark: bool = False) -> np.ndarray:
    from training.plots import pyplot

    plt = pyplot()

    with plt.style.context("dark_background" if dark else "default"):
        figure = plt.figure(figsize=(5, 4), dpi=80)
        draw(figure)
        figure.canvas.draw()
        pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
        plt.close(figure)
    return pixels


def _charts() -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    kinds = ("line", "bar", "scatter", "hist", "pie", "heatmap", "contour", "boxplot")
    for index in range(32):
        kind = kinds[index % len(kinds)]
        dark = index % 4 == 3

        def draw(figure: object, kind: str = kind, index: int = index) -> None:
            axes = figure.add_subplot(111)  # type: ignore[attr-defined]
            x = np.linspace(0, 10, 200)
            if kind == "line":
                for _ in range(rng.integers(1, 4)):
                    axes.plot(x, np.cumsum(rng.normal(size=x.size)))
            elif kind == "bar":
                axes.bar(list("ABCDEFG"), rng.uniform(1, 10, 7))
            elif kind == "scatter":
                axes.scatter(rng.normal(size=300), rng.normal(size=300), s=8, c=rng.uniform(size=300))
            elif kind == "hist":
                axes.hist(rng.normal(size=2000), bins=40)
            elif kind == "pie":
                axes.pie(rng.uniform(1, 5, 5), labels=list("abcde"))
            elif kind == "heatmap":
                axes.imshow(rng.normal(size=(12, 12)), cmap="viridis")
            elif kind == "contour":
                gx, gy = np.meshgrid(np.linspace(-3, 3, 80), np.linspace(-3, 3, 80))
                axes.contourf(gx, gy, np.sin(gx * rng.uniform(0.5, 2)) * np.cos(gy), levels=12)
            else:
                axes.boxplot([rng.normal(size=50) for _ in range(5)])
            axes.set_title(f"Quarterly report {index}")

        yield f"chart-{index:02d}-{kind}{'-dark' if dark else ''}", _figure_pixels(draw, dark=dark)


def _pydicom_dir() -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


CT_NM_FILES = (
    "CT_small.dcm",
    "693_J2KI.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "JPEG2000.dcm",
    "image_dfl.dcm",
    "liver_1frame.dcm",
)
ULTRASOUND_BODY_FILES = (
    "examples_jpeg2k.dcm",
    "examples_palette.dcm",
    "examples_rgb_color.dcm",
    "examples_ybr_color.dcm",
    "ExplVR_BigEnd.dcm",
    "examples_overlay.dcm",
)
# CT windows (centre, width) in Hounsfield units: brain, soft tissue, bone, lung.
CT_WINDOWS = ((40, 80), (50, 400), (500, 2000), (-600, 1500))


def _dicom_images(files: tuple[str, ...]) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of pydicom's bundled test files (no download), windowed as a viewer would."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    rng = np.random.default_rng(3)
    for file in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(_pydicom_dir() / file)
            frames = dataset.pixel_array  # pydicom 3 returns YBR colour already as RGB
        if dataset.PhotometricInterpretation == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            frames = apply_color_lut(frames, dataset)
        multi = int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1
        frames = frames[:: max(1, len(frames) // 4)] if multi else frames[None]
        stem = file.removesuffix(".dcm")
        for number, frame in enumerate(frames):
            frame = _upscale(frame, 256)
            if frame.ndim == 3:
                top = 255 if frame.max() <= 255 else float(frame.max())
                yield from _variants(f"{stem}-{number}", to_uint8(frame, 0, top), rng)
                continue
            if dataset.get("Modality") == "CT":
                hounsfield = apply_modality_lut(frame, dataset)
                for centre, width in CT_WINDOWS:
                    yield f"{stem}-{number}-w{centre}", to_uint8(hounsfield, centre - width / 2, centre + width / 2)
            else:
                yield from _variants(f"{stem}-{number}", to_uint8(frame), rng)


def _upscale(frame: np.ndarray, side: int) -> np.ndarray:
    """Small test frames (64-128 px) enlarged as a viewer's export would be."""
    if min(frame.shape[:2]) >= side:
        return frame
    import cv2

    factor = side / min(frame.shape[:2])
    size = (round(frame.shape[1] * factor), round(frame.shape[0] * factor))
    return cv2.resize(frame.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)


def _ellipse_phantom(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A random head-like phantom: a bright skull ellipse, darker inside, a few inner ellipses."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    image = np.zeros((size, size))
    a, b = rng.uniform(0.6, 0.8), rng.uniform(0.75, 0.95)
    image[(xx / a) ** 2 + (yy / b) ** 2 <= 1] = 1.0
    image[(xx / (a - 0.06)) ** 2 + (yy / (b - 0.06)) ** 2 <= 1] = rng.uniform(0.2, 0.4)
    for _ in range(rng.integers(3, 9)):
        cx, cy = rng.uniform(-0.4, 0.4, 2)
        ax, ay, angle = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        image[(u / ax) ** 2 + (v / ay) ** 2 <= 1] += rng.uniform(-0.2, 0.4)
    return np.clip(image, 0, 1)


def _phantoms() -> Iterator[tuple[str, np.ndarray]]:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import rotate

    rng = np.random.default_rng(4)
    phantom = shepp_logan_phantom()
    for index, angle in enumerate((0, 10, -15, 90)):
        yield f"shepp-logan-{index}", to_uint8(rotate(phantom, angle), 0, 1)
    yield "shepp-logan-noisy", to_uint8(phantom + rng.normal(0, 0.05, phantom.shape), 0, 1)
    for index in range(20):
        yield f"ellipses-{index:02d}", to_uint8(_ellipse_phantom(rng), 0, 1)


def _noise() -> Iterator[tuple[str, np.ndarray]]:
    import cv2

    rng = np.random.default_rng(5)
    for index in range(6):
        yield f"gaussian-{index}", to_uint8(rng.normal(0.5, 0.2, (256, 256)), 0, 1)
        yield f"uniform-rgb-{index}", rng.integers(0, 256, (224, 300, 3), dtype=np.uint8)
        smooth = cv2.GaussianBlur(rng.normal(size=(256, 256)).astype(np.float32), (0, 0), 2 + 3 * index)
        yield f"smooth-{index}", to_uint8(smooth)
        dark = np.zeros((256, 256))
        dark[64:192, 64:192] = rng.uniform(size=(128, 128))
        yield f"noise-square-{index}", to_uint8(dark, 0, 1)


# --- held-out families ----------------------------------------------------------------------


def _scientific() -> Iterator[tuple[str, np.ndarray]]:
    import matplotlib.cbook
    from skimage import data

    rng = np.random.default_rng(6)
    names = (
        "hubble_deep_field", "cell", "immunohistochemistry", "retina", "microaneurysms", "moon",
        "colorwheel", "logo", "page", "text", "horse", "binary_blobs",
    )  # fmt: skip
    for name in names:
        pixels = np.asarray(data.binary_blobs(rng=7) if name == "binary_blobs" else getattr(data, name)())
        if pixels.dtype == bool:
            pixels = pixels.astype(np.uint8) * 255
        if name == "microaneurysms":
            pixels = _upscale(pixels, 256).astype(np.uint8)
        yield from _variants(name, pixels, rng)
    for file in ("logo2.png", "Minduka_Present_Blue_Pack.png"):
        with matplotlib.cbook.get_sample_data(file) as handle:
            yield from _variants(file.split(".")[0], np.asarray(Image.open(handle).convert("RGB")), rng)
    for file, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        with matplotlib.cbook.get_sample_data(file) as stored:
            yield file.split(".")[0], to_uint8(_upscale(stored[key], 256))


WORDS = [
    *("patient", "report", "clinic", "scan", "results", "summary", "invoice", "total", "date", "signature"),
    *("referral", "imaging", "department", "appointment", "please", "contact", "radiology", "findings"),
    *("history", "medication", "allergies", "none"),
]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _documents() -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    for index in range(24):
        kind = ("page", "form", "screenshot")[index % 3]
        width, height = (620, 800) if kind != "screenshot" else (800, 500)
        dark = kind == "screenshot" and index % 2 == 1
        image = Image.new("RGB", (width, height), (30, 30, 36) if dark else (255, 255, 255))
        draw = ImageDraw.Draw(image)
        ink = (220, 220, 220) if dark else (20, 20, 20)
        y = 30
        if kind == "screenshot":
            draw.rectangle([0, 0, width, 36], fill=(60, 90, 160))
            draw.text((12, 8), "Clinic viewer - study list", fill=(255, 255, 255), font=_font(18))
            draw.rectangle([0, 36, 180, height], fill=(50, 50, 60) if dark else (235, 235, 240))
            for row in range(8):
                draw.text((12, 60 + row * 40), " ".join(rng.choice(WORDS, 2)), fill=ink, font=_font(14))
            for row in range(5):
                top = 60 + row * 80
                draw.rectangle([200, top, width - 20, top + 60], outline=ink)
                draw.text((212, top + 10), " ".join(rng.choice(WORDS, 6)), fill=ink, font=_font(16))
                draw.rectangle([width - 140, top + 18, width - 40, top + 44], fill=(70, 130, 90))
            yield f"screenshot-{index:02d}", np.asarray(image)
            continue
        size = int(rng.integers(12, 22))
        draw.text((40, y), "LABORATORY REPORT" if kind == "page" else "REFERRAL FORM", fill=ink, font=_font(28))
        y += 60
        while y < height - 40:
            if kind == "form" and rng.uniform() < 0.3:
                draw.rectangle([40, y, width - 40, y + 2 * size], outline=ink)
            draw.text((40, y), " ".join(rng.choice(WORDS, int(rng.integers(4, 10)))), fill=ink, font=_font(size))
            y += int(size * 1.6)
        yield f"{kind}-{index:02d}", np.asarray(image)


def _faces() -> Iterator[tuple[str, np.ndarray]]:
    from skimage.data import lfw_subset

    faces = lfw_subset()
    for index in range(0, len(faces), 8):
        yield f"lfw-{index:03d}", to_uint8(_upscale(faces[index], 128), 0, 1)


def _patterns() -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    for index in range(4):
        angle = rng.uniform(0, np.pi)
        yield f"gradient-{index}", to_uint8(np.cos(angle) * xx + np.sin(angle) * yy)
        yield f"radial-{index}", to_uint8(-np.hypot(xx - rng.uniform(0.3, 0.7), yy - rng.uniform(0.3, 0.7)))
        period = int(rng.integers(6, 40))
        yield f"stripes-{index}", to_uint8(np.sin(2 * np.pi * (xx * 255) / period + angle))
        cell = int(rng.integers(8, 64))
        yield f"checker-{index}", ((((xx * 255) // cell + (yy * 255) // cell) % 2) * 255).astype(np.uint8)
        ring = np.hypot(xx - 0.5, yy - 0.5)
        yield f"rings-{index}", to_uint8(np.sin(ring * rng.uniform(20, 80)) * (ring < 0.45))


# --- what the gate and the upload check make of the corpus (training/ood.py, gate_evidence.py) ---


def corpus_features(features: object, card: ModelCard) -> tuple[list, Any, np.ndarray]:
    """The OOD corpus, its features (name → array per layer), and which images the upload check
    refuses."""
    import hashlib

    from training.ood_features import cached_features

    corpus = build_corpus()
    items = [(f"{i.family}/{i.name}/{hashlib.sha256(i.data).hexdigest()}", lambda i=i: i.data) for i in corpus]
    found = cached_features(
        features, card.version, card.input_size, items, "ood-corpus", head_crop=card.head_crop
    )
    refused = np.asarray([upload_refusal(i.data) is not None for i in corpus])
    return corpus, found, refused


def upload_refusal(data: bytes) -> str | None:
    """The upload check's message for this file, or None when it would be accepted."""
    from mri.intake.decode import decode_gray, inspect_scan
    from mri.intake.image_content import reject_uninformative
    from mri.intake.limits import ScanDecodeError

    try:
        inspect_scan(data)
        reject_uninformative(decode_gray(data))
    except ScanDecodeError as exc:
        return str(exc.args[0])
    return None
