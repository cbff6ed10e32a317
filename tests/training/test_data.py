from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clothing.preprocessing import resized_pixels
from clothing.training.data import (
    AUGMENTATIONS,
    DatasetError,
    augment,
    content_hash,
    list_classes,
    list_images,
    load_batch,
)
from tests.images import solid


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    solid(colour, size).save(path)


def test_classes_are_sorted_folder_names_and_labels_follow(tmp_path: Path) -> None:
    write_image(tmp_path / "skirt" / "b.jpg", (1, 2, 3))
    write_image(tmp_path / "hat" / "a.png", (4, 5, 6))
    write_image(tmp_path / "hat" / "c.jpg", (7, 8, 9))
    (tmp_path / "hat" / "notes.txt").write_text("not an image")
    classes = list_classes(tmp_path)
    assert classes == ("hat", "skirt")
    images = list_images(tmp_path, classes)
    assert [p.name for p in images.paths] == ["a.png", "c.jpg", "b.jpg"]
    assert images.labels == (0, 0, 1)
    assert len(list_images(tmp_path, classes, max_per_class=1)) == 2


def test_missing_or_empty_folders_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        list_classes(tmp_path / "absent")
    with pytest.raises(DatasetError, match="no class subfolders"):
        list_classes(tmp_path)
    (tmp_path / "hat").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        list_images(tmp_path, ("hat",))
    with pytest.raises(DatasetError, match="missing class folder"):
        list_images(tmp_path, ("dress",))


def test_model_input_is_a_plain_bilinear_resize_to_uint8() -> None:
    image = Image.fromarray(np.arange(30 * 40 * 3, dtype=np.uint8).reshape(30, 40, 3))
    pixels = resized_pixels(image, 24, 16)
    assert pixels.shape == (16, 24, 3)
    assert pixels.dtype == np.uint8
    expected = np.asarray(image.resize((24, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(pixels, expected)


def test_load_batch_converts_grey_and_alpha_to_rgb_as_the_gateway_does(tmp_path: Path) -> None:
    Image.new("L", (10, 10), 128).save(tmp_path / "grey.png")
    Image.new("RGBA", (10, 10), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    batch = load_batch([tmp_path / "grey.png", tmp_path / "alpha.png"], 8, 8)
    assert batch.shape == (2, 8, 8, 3)
    assert batch[0, 0, 0].tolist() == [128, 128, 128]
    assert batch[1, 0, 0].tolist() == [255, 255, 255]  # transparent: flattened onto white


@pytest.mark.parametrize("strength", AUGMENTATIONS)
def test_augment_is_seeded_and_varies(strength: str) -> None:
    rng_image = np.random.default_rng(0).integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
    image = Image.fromarray(rng_image)
    first = augment(image, 32, 32, np.random.default_rng(1), strength)
    again = augment(image, 32, 32, np.random.default_rng(1), strength)
    other = augment(image, 32, 32, np.random.default_rng(2), strength)
    assert first.shape == (32, 32, 3)
    assert first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_content_hash_tracks_bytes_and_names(tmp_path: Path) -> None:
    write_image(tmp_path / "hat" / "a.png", (1, 2, 3))
    paths = [tmp_path / "hat" / "a.png"]
    before = content_hash(tmp_path, paths)
    assert content_hash(tmp_path, paths) == before
    write_image(tmp_path / "hat" / "a.png", (1, 2, 4))
    changed = content_hash(tmp_path, paths)
    assert changed != before
    (tmp_path / "hat" / "a.png").rename(tmp_path / "hat" / "b.png")
    assert content_hash(tmp_path, [tmp_path / "hat" / "b.png"]) != changed


def test_strong_augment_blanks_regions_that_light_keeps() -> None:
    """A flat grey photo only gains far-off pixels from random erasing."""
    image = Image.new("RGB", (64, 64), (128, 128, 128))
    rng = np.random.default_rng(3)
    light = np.stack([augment(image, 32, 32, rng, "light") for _ in range(20)])
    strong = np.stack([augment(image, 32, 32, rng, "strong") for _ in range(20)])
    spread = [int(np.ptp(view)) for view in light]
    assert max(spread) == 0  # light jitter moves every pixel of a flat view together
    erased = sum(int(np.ptp(view)) > 100 for view in strong)
    assert 3 <= erased <= 17  # about half the strong views carry a noise rectangle
