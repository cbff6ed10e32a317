"""Small image files that declare a huge pixel count, in every accepted format.

Each starts from a real tiny image (``tests/images.py``) and rewrites only the
dimensions in its header, so the file stays a few hundred bytes while a
decoder that trusted it would allocate gigabytes.
"""

from __future__ import annotations

import struct
import zlib

from PIL import Image

from tests.images import encode, solid


def _encoded(fmt: str, **options: object) -> bytes:
    return encode(solid((10, 200, 30), (8, 8)), fmt, **options)


def png(width: int = 100_000, height: int = 100_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # Some real compressed scanlines of zeros: a decoder that started would keep going.
    pixels = zlib.compress(b"\x00" * (1 + 3 * min(width, 4096)) * 64, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def jpeg(width: int = 65_000, height: int = 65_000) -> bytes:
    data = bytearray(_encoded("JPEG", quality=90))
    index = 2
    while index < len(data):
        marker = data[index + 1]
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):  # start of frame: precision, height, width
            struct.pack_into(">HH", data, index + 5, height, width)
            return bytes(data)
        index += 2 + length
    raise AssertionError("no SOF marker in the JPEG")


def gif(width: int = 65_535, height: int = 65_535) -> bytes:
    data = bytearray(_encoded("GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # logical screen
    descriptor = data.index(b"\x2c")  # image separator
    struct.pack_into("<HH", data, descriptor + 5, width, height)
    return bytes(data)


def webp(width: int = 16_384, height: int = 16_384) -> bytes:
    """Lossless WebP (VP8L): 14-bit width-1 and height-1 after the 0x2f signature."""
    data = bytearray(_encoded("WEBP", lossless=True))
    start = data.index(b"VP8L") + 8
    assert data[start] == 0x2F
    (bits,) = struct.unpack("<I", data[start + 1 : start + 5])
    tail = bits & ~((1 << 28) - 1)  # alpha hint and version stay as they were
    packed = (width - 1) | ((height - 1) << 14) | tail
    struct.pack_into("<I", data, start + 1, packed)
    return bytes(data)


BOMBS = {"png": png, "jpeg": jpeg, "gif": gif, "webp": webp}
DECLARED_PIXELS = {
    "png": 100_000 * 100_000,
    "jpeg": 65_000 * 65_000,
    "gif": 65_535 * 65_535,
    "webp": 16_384 * 16_384,
}


# Real images whose header is honest but whose decoded size is far above the file's:
# a few hundred KB that decode to 100-160 MB. Flat colour with a few stripes, so that
# they compress well and still exercise every row.


def _striped(mode: str, size: tuple[int, int], colour: object, stripe: object) -> Image.Image:
    image = Image.new(mode, size, colour)  # type: ignore[arg-type]
    width, height = size
    for top in range(0, height, 97):
        image.paste(stripe, (0, top, width, min(height, top + 3)))  # type: ignore[arg-type]
    return image


def rgba_png(side: int = 6324) -> bytes:
    """RGBA PNG, half transparent: 4 bytes a pixel decoded (6324 x 6324: 160 MB)."""
    image = _striped("RGBA", (side, side), (200, 30, 30, 128), (0, 0, 255, 255))
    return encode(image, "PNG", compress_level=9)


def gray16_png(side: int = 4500) -> bytes:
    """16-bit greyscale PNG: 2 bytes a pixel, 4 more while converted."""
    image = _striped("I;16", (side, side), 40_000, 1_000)
    return encode(image, "PNG", compress_level=9)


def palette_png(side: int = 4800) -> bytes:
    """Palette PNG with a transparent index: 1 byte a pixel, 4 more as RGBA."""
    image = _striped("P", (side, side), 1, 2)
    image.putpalette([255, 255, 255, 200, 30, 30, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.info["transparency"] = 0
    return encode(image, "PNG", compress_level=9, transparency=0)


def gif_frames(side: int = 4800, frames: int = 3) -> bytes:
    """Animated GIF: only the first frame is classified."""
    first = _striped("P", (side, side), 1, 2)
    first.putpalette([255, 255, 255, 200, 30, 30, 0, 0, 255] + [0] * (256 * 3 - 9))
    others = [
        first.point(lambda value, shift=index: (value + shift) % 3) for index in range(1, frames)
    ]
    return encode(first, "GIF", save_all=True, append_images=others)


def mpo(side: int = 6324, frames: int = 2) -> bytes:
    """Multi-picture JPEG (MPO), as phones write for 3D or depth photos: each frame a
    full JPEG; Pillow opens it as format "MPO", not "JPEG"."""
    first = _striped("RGB", (side, side), (30, 120, 200), (250, 250, 250))
    others = [first.rotate(90 * index) for index in range(1, frames)]
    return encode(first, "MPO", save_all=True, append_images=others, quality=80)


# What each decodes to at full size, bytes (mode x pixels, before any reduction).
DECODED_BYTES = {
    "rgba_png": lambda side: side * side * 4,
    "gray16_png": lambda side: side * side * 2,
    "palette_png": lambda side: side * side,
    "gif_frames": lambda side: side * side,
    "mpo": lambda side: side * side * 4,
}


def progressive_jpeg(side: int = 6000, mode: str = "RGB") -> bytes:
    """Progressive JPEG (libjpeg's script: 10 scans for colour, 18 for CMYK). Whatever
    the ``draft`` scale, libjpeg keeps every coefficient at full size until the last
    scan: 2 bytes a sample."""
    colour = (30, 120, 200) if mode == "RGB" else (30, 120, 200, 10)
    stripe = (250, 250, 250) if mode == "RGB" else (250, 250, 250, 0)
    return encode(_striped(mode, (side, side), colour, stripe), "JPEG", progressive=True)


def progressive_cmyk(side: int = 6000) -> bytes:
    return progressive_jpeg(side, "CMYK")


def repeated_scans(copies: int = 2000, side: int = 2048) -> bytes:
    """A flat progressive JPEG whose last scan (a few bytes: nothing to refine) is
    repeated ``copies`` times: each copy is one more pass over all the coefficients."""
    data = encode(solid((30, 120, 200), (side, side)), "JPEG", progressive=True)
    last = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * copies + data[end:]


def webp_photo(side: int = 4000) -> bytes:
    """Lossy WebP: libwebp decodes into buffers of its own that are then copied."""
    return encode(_striped("RGB", (side, side), (30, 120, 200), (250, 250, 250)), "WEBP")


def png_text(megabytes: int = 60) -> bytes:
    """A 48x40 PNG carrying ``megabytes`` of zTXt that inflate from a few hundred KB."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for index in range(megabytes):
        info.add_text(f"note{index}", "a" * 1024 * 1024, zip=True)
    return encode(solid((10, 200, 30), (48, 40)), "PNG", pnginfo=info)


DECODED_BYTES.update(
    {
        "progressive_jpeg": lambda side: side * side * 4,
        "progressive_cmyk": lambda side: side * side * 4,
        "webp_photo": lambda side: side * side * 4,
    }
)
