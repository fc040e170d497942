"""Structure checks of an uploaded JPEG/PNG, before (and instead of) decoding its pixels.

The web process must not pay for a hostile file what a scan never costs: these walks read the
container's segments and chunks from the bytes already in memory, keep nothing the size of the
image, and refuse with a message fit to show the user:
- anything after the end of the image (JPEG+HTML/ZIP polyglots), markup in metadata;
- metadata (JPEG APPn/COM, PNG text/ICC/EXIF/unknown chunks) over METADATA_LIMIT, compressed
  PNG metadata that inflates past it;
- progressive JPEGs with more than MAX_JPEG_SCANS scans (scan bombs);
- PNG: chunk CRCs, a pixel stream (inflated in bounded steps, never held) that is not exactly
  the size the header promises, invalid row filters, animated PNGs.
No TensorFlow, no Django: the web process and the workers both call `check_container`.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

# Real scans carry a few KiB of EXIF/ICC; 1 MiB is far above that.
METADATA_LIMIT = 1 << 20
# A progressive JPEG from an ordinary encoder has about 10 scans; each scan is one more pass
# over the whole image, so thousands of tiny scans turn a small file into minutes of CPU.
MAX_JPEG_SCANS = 64
# What a browser would render as a page or script if the file were ever sniffed as HTML.
_MARKUP = re.compile(rb"<(?:script|html|svg|iframe|body|object|embed|!doctype)\b|javascript:", re.IGNORECASE)
_INFLATE_STEP = 1 << 20  # bytes of pixel rows inflated at a time


class ContainerError(ValueError):
    """The file's structure is refused; `.args[0]` is fit to show a user."""


@dataclass(frozen=True)
class Container:
    progressive: bool = False
    scans: int = 0
    metadata_bytes: int = 0


def check_container(data: bytes, image_format: str) -> Container:
    if image_format == "JPEG":
        return _check_jpeg(data)
    if image_format == "PNG":
        return _check_png(data)
    raise ContainerError(f"{image_format} files are not accepted; upload a JPEG or PNG scan.")


def _refuse_markup(blob: bytes | memoryview) -> None:
    if _MARKUP.search(bytes(blob)):
        raise ContainerError("The file's metadata contains web page markup (HTML/SVG/script); it is not accepted.")


def _refuse_trailing(data: bytes, end: int) -> None:
    trailing = data[end:]
    if trailing.strip(b"\x00\r\n\t "):
        raise ContainerError(
            f"The file has {len(trailing):,} bytes after the end of the image (another file appended?); "
            "it is not accepted."
        )


def _metadata_too_large(size: int) -> ContainerError:
    return ContainerError(
        f"The file carries {size / 2**20:.1f} MB of metadata (text, colour profile or other chunks); "
        f"a scan has far less, the limit is {METADATA_LIMIT // 2**20} MB."
    )


# JPEG ------------------------------------------------------------------------------------
_SOF_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _check_jpeg(data: bytes) -> Container:
    size = len(data)
    if data[:2] != b"\xff\xd8":
        raise ContainerError("The file is not a JPEG or PNG image.")
    pos, scans, metadata, progressive = 2, 0, 0, False
    while True:
        if pos >= size or data[pos] != 0xFF:
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            _refuse_trailing(data, pos)
            return Container(progressive=progressive, scans=scans, metadata_bytes=metadata)
        if marker in _STANDALONE:
            continue
        if pos + 2 > size:
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > size:
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
        segment = memoryview(data)[pos + 2 : pos + length]
        pos += length
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn, COM
            metadata += len(segment)
            if metadata > METADATA_LIMIT:
                raise _metadata_too_large(metadata)
            _refuse_markup(segment)
        elif marker in _SOF_PROGRESSIVE:
            progressive = True
        elif marker == 0xDA:  # SOS: entropy-coded data follows, up to the next real marker
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ContainerError(
                    f"The JPEG has more than {MAX_JPEG_SCANS} progressive scans (an ordinary export has "
                    "about 10); it is not accepted."
                )
            pos = _skip_entropy_coded(data, pos)


def _skip_entropy_coded(data: bytes, pos: int) -> int:
    """Position of the first marker after entropy-coded data (0xFF not followed by 00 or RSTn)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1 if following == 0xFF else 2
            continue
        return pos


# PNG -------------------------------------------------------------------------------------
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_COMPRESSED_METADATA = {b"zTXt": 1, b"iCCP": 1, b"iTXt": 0}  # value: has a compression method byte


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int

    def row_bytes(self, width: int) -> int:
        return (width * _CHANNELS[self.color_type] * self.bit_depth + 7) // 8

    def passes(self) -> list[tuple[int, int]]:
        """(rows, bytes per row including the filter byte) of each pass."""
        if not self.interlace:
            return [(self.height, 1 + self.row_bytes(self.width))]
        out = []
        for x0, y0, dx, dy in _ADAM7:
            w = (self.width - x0 + dx - 1) // dx if self.width > x0 else 0
            h = (self.height - y0 + dy - 1) // dy if self.height > y0 else 0
            if w and h:
                out.append((h, 1 + self.row_bytes(w)))
        return out


def _check_png(data: bytes) -> Container:
    if not data.startswith(_PNG_SIGNATURE):
        raise ContainerError("The file is not a JPEG or PNG image.")
    pos, header, metadata = len(_PNG_SIGNATURE), None, 0
    pixels = _PixelStream()
    while True:
        if pos + 12 > len(data):
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
        body = memoryview(data)[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(memoryview(data)[pos + 4 : pos + 8 + length]) != crc:
            raise ContainerError("The image is corrupt (a PNG chunk fails its checksum).")
        pos = end
        if header is None:
            if kind != b"IHDR" or length != 13:
                raise ContainerError("The image is truncated or corrupt and cannot be read.")
            width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            if color not in _CHANNELS:
                raise ContainerError("The image is truncated or corrupt and cannot be read.")
            header = _Header(width, height, depth, color, interlace)
            pixels.start(header)
        elif kind == b"IDAT":
            pixels.feed(body)
        elif kind == b"IEND":
            pixels.finish()
            _refuse_trailing(data, pos)
            return Container(metadata_bytes=metadata)
        elif kind in (b"acTL", b"fcTL", b"fdAT"):
            raise ContainerError("Animated PNGs are not accepted; upload a single scan.")
        elif kind not in (b"PLTE", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"sBIT", b"bKGD"):
            # Text, ICC profile, EXIF and any unknown chunk: metadata, bounded and markup-free.
            metadata += length + _inflated_size(kind, body)
            if metadata > METADATA_LIMIT:
                raise _metadata_too_large(metadata)
            _refuse_markup(body)


def _inflated_size(kind: bytes, body: memoryview) -> int:
    """Bytes a compressed text/ICC chunk inflates to, counted up to the limit (never beyond)."""
    if kind not in _COMPRESSED_METADATA:
        return 0
    raw = bytes(body)
    start = raw.find(b"\0")  # keyword / profile name
    if start < 0:
        return 0
    if kind == b"iTXt":
        if start + 2 >= len(raw) or raw[start + 1] != 1:  # not compressed
            return 0
        # flag, method, language\0, translated keyword\0, then the compressed text
        rest = raw.find(b"\0", raw.find(b"\0", start + 3) + 1)
        stream = raw[rest + 1 :] if rest >= 0 else b""
    else:
        stream = raw[start + 2 :]
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(stream, METADATA_LIMIT + 1)
    except zlib.error:
        raise ContainerError("The image is corrupt (a compressed PNG chunk cannot be read).") from None
    if len(out) > METADATA_LIMIT:
        raise _metadata_too_large(len(out))
    _refuse_markup(out)
    return len(out)


class _PixelStream:
    """Inflates the IDAT stream in bounded steps, checking each row's filter byte and that the
    total is exactly what the header promises; nothing of the image's size is kept."""

    def start(self, header: _Header) -> None:
        self.passes = header.passes()
        self.expected = sum(rows * row for rows, row in self.passes)
        self.inflater = zlib.decompressobj()
        self.seen = 0
        self._pass, self._row_in_pass, self._offset_in_row = 0, 0, 0

    def feed(self, chunk: memoryview) -> None:
        if not hasattr(self, "inflater"):
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
        pending = bytes(chunk)
        while pending:
            try:
                out = self.inflater.decompress(pending, _INFLATE_STEP)
            except zlib.error:
                raise ContainerError("The image is truncated or corrupt and cannot be read.") from None
            pending = self.inflater.unconsumed_tail
            self._account(out)
            if self.inflater.eof:
                return

    def _account(self, out: bytes) -> None:
        self.seen += len(out)
        if self.seen > self.expected:
            raise ContainerError("The image holds more pixel data than its size says; it is not accepted.")
        pos = 0
        while pos < len(out):
            rows, row = self.passes[self._pass]
            if self._offset_in_row == 0 and out[pos] > 4:
                raise ContainerError("The image is truncated or corrupt and cannot be read.")
            step = min(row - self._offset_in_row, len(out) - pos)
            pos += step
            self._offset_in_row += step
            if self._offset_in_row == row:
                self._offset_in_row = 0
                self._row_in_pass += 1
                if self._row_in_pass == rows:
                    self._row_in_pass = 0
                    self._pass += 1
                    if self._pass == len(self.passes):
                        return

    def finish(self) -> None:
        if not hasattr(self, "inflater"):
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
        # Whatever the inflater still holds, in bounded steps; then the stream must be complete.
        while not self.inflater.eof:
            try:
                out = self.inflater.decompress(self.inflater.unconsumed_tail, _INFLATE_STEP)
            except zlib.error:
                raise ContainerError("The image is truncated or corrupt and cannot be read.") from None
            if not out:
                break
            self._account(out)
        if not self.inflater.eof or self.seen != self.expected:
            raise ContainerError("The image is truncated or corrupt and cannot be read.")
