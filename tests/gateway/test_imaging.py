import numpy as np
import pytest
from PIL import Image, ImageFile

from clothing.gateway.errors import NotAnImage, TooLarge
from clothing.gateway.imaging import InputSpec, decode_rgb, prepare
from tests.hardening import bombs
from tests.images import (
    encode,
    gif_two_frames,
    halves,
    jpeg,
    jpeg_rotated_180,
    png_rgba,
    solid,
    webp,
)

SPEC = InputSpec("image", height=20, width=30)


def test_jpeg_is_resized_to_the_model_size():
    row = prepare(jpeg((200, 30, 30)), SPEC)
    assert row.shape == (20, 30, 3)
    assert row.dtype == np.uint8
    assert np.abs(row.astype(int) - [200, 30, 30]).max() <= 4


def test_png_transparency_is_flattened_onto_white():
    image = decode_rgb(png_rgba(), target=(40, 40), max_pixels=10**6)
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (20, 160, 40)
    assert image.getpixel((35, 5)) == (255, 255, 255)


def test_webp_decodes():
    row = prepare(webp(), SPEC)
    assert tuple(row[10, 15]) == (30, 60, 220)


def test_gif_uses_the_first_frame():
    row = prepare(gif_two_frames(), SPEC)
    red, _, blue = (int(v) for v in row[10, 15])
    assert red > 200
    assert blue < 50


def test_exif_orientation_is_applied():
    image = decode_rgb(jpeg_rotated_180(), target=(60, 40), max_pixels=10**6)
    top, bottom = image.getpixel((30, 5)), image.getpixel((30, 35))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    # After turning 180° blue is on top.
    assert top[2] > 200
    assert top[0] < 50
    assert bottom[0] > 200
    assert bottom[2] < 50


def test_exif_rotation_by_90_swaps_width_and_height():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(halves((250, 0, 0), (0, 0, 250)), "JPEG", exif=exif.tobytes())
    assert decode_rgb(data, target=(60, 60), max_pixels=10**6).size == (40, 60)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    data = encode(solid((90, 90, 90), (16, 16)).convert(mode), fmt)
    assert decode_rgb(data, target=(8, 8), max_pixels=10**6).mode == "RGB"


def test_large_jpeg_uses_reduced_decode_and_matches_full_decode():
    gradient = np.tile(np.linspace(0, 255, 1600, dtype=np.uint8), (1200, 1))
    data = encode(Image.fromarray(gradient).convert("RGB"), "JPEG", quality=95)
    reduced = decode_rgb(data, target=(64, 64), max_pixels=10**8)
    assert reduced.size[0] < 1600, "draft mode decodes at a smaller scale"
    full = Image.open(__import__("io").BytesIO(data)).convert("RGB").resize((64, 64))
    small = reduced.resize((64, 64))
    assert np.abs(np.asarray(full, int) - np.asarray(small, int)).mean() < 3


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    """Refused from the header alone: Pillow never starts decoding pixels."""
    decodes: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def counted_load(image):
        decodes.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted_load)
    with pytest.raises(TooLarge, match="pixels"):
        prepare(bombs.png(30000, 30000), SPEC)
    with pytest.raises(TooLarge, match="pixels"):
        prepare(bombs.png(8000, 8000), SPEC, max_pixels=10**6)
    assert decodes == []
    prepare(bombs.png(8, 8), SPEC)  # a small one is decoded (the spy sees it)
    assert set(decodes) == {(8, 8)}


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"GIF89a", b"\x89PNG\r\n\x1a\n"])
def test_non_images_are_refused(data):
    with pytest.raises(NotAnImage):
        prepare(data, SPEC)


def test_other_formats_are_refused():
    with pytest.raises(NotAnImage):
        prepare(encode(solid((1, 2, 3)), "BMP"), SPEC)


def test_truncated_jpeg_is_refused():
    data = jpeg(size=(300, 200))
    with pytest.raises(NotAnImage, match="truncated"):
        prepare(data[: len(data) // 2], SPEC)


def test_xception_and_imagenet_scaling():
    data = jpeg((255, 0, 128))
    xception = prepare(data, InputSpec("x", 8, 8, "float32", "xception"))
    assert xception.dtype == np.float32
    assert np.allclose(xception[4, 4], [1.0, -1.0, 0.0], atol=0.05)
    imagenet = prepare(data, InputSpec("x", 8, 8, "float32", "imagenet"))
    expected = (np.array([255, 0, 128]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert np.allclose(imagenet[4, 4], expected, atol=0.1)
    raw_float = prepare(data, InputSpec("x", 8, 8, "float32", "none"))
    assert raw_float.dtype == np.float32
    assert raw_float.max() > 200
