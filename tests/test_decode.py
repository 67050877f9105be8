import numpy as np
import pytest
from PIL import Image

from phototag.scan.decode import decode, load_full
from phototag.errors import PhotoError

from .conftest import exif_bytes, save_jpeg


def test_orientation_is_applied_and_dimensions_are_as_shown(tmp_path):
    # Stored 400 wide x 200 high, red on the left; orientation 6 means "rotate 90 clockwise to show".
    px = np.zeros((200, 400, 3), np.uint8)
    px[:, :200] = (255, 0, 0)
    p = save_jpeg(tmp_path / "rot.jpg", px, exif_bytes(orientation=6))
    d = decode(p, detect_size=1000)
    assert (d.width, d.height, d.orientation) == (200, 400, 6)
    assert d.pixels.shape == (400, 200, 3)
    assert d.pixels[50, 100, 0] > 200 and d.pixels[350, 100, 0] < 60  # red is now on top
    assert load_full(p).shape == (400, 200, 3)
    assert d.taken_at == "1984-02-07T10:00:00"


def test_large_jpeg_is_decoded_reduced_to_detection_size(tmp_path):
    rng = np.random.default_rng(0)
    p = save_jpeg(tmp_path / "big.jpg", rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8))
    d = decode(p, detect_size=1000)
    assert d.pixels.shape == (750, 1000, 3)  # a 4:3 photo: exactly detect_size long
    assert d.scale == pytest.approx(4.0)
    assert (d.width, d.height) == (4000, 3000)


def test_a_wide_photo_keeps_the_pixel_budget_not_the_long_side(tmp_path):
    rng = np.random.default_rng(0)
    p = save_jpeg(tmp_path / "wide.jpg", rng.integers(0, 255, (1500, 6000, 3), dtype=np.uint8))
    d = decode(p, detect_size=1000)
    h, w = d.pixels.shape[:2]
    assert 1000 * 750 * 0.98 < h * w <= 1000 * 750 and w == pytest.approx(4 * h, abs=2)
    assert d.scale == pytest.approx(6000 / w)


def test_faces_are_cut_from_a_copy_only_as_large_as_they_need(tmp_path):
    from phototag.scan.decode import load_for_crops

    rng = np.random.default_rng(0)
    p = save_jpeg(tmp_path / "big.jpg", rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8))
    assert load_for_crops(p, [1000])[0].shape == (750, 1000, 3)  # 1000 px face: 1/4 keeps it 250 wide, 1/8 would not
    assert load_for_crops(p, [1000, 250])[1] == 1.0  # the narrowest face decides (250/2 < 150)
    px, factor = load_for_crops(p, [100], max_pixels=4_000_000)  # a pixel budget forces 1/2 regardless
    assert px.shape == (1500, 2000, 3) and factor == 2.0


def test_png_grey_and_cmyk_become_rgb(tmp_path, astronaut):
    Image.fromarray(astronaut).convert("L").save(tmp_path / "g.png")
    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "c.jpg")
    assert decode(tmp_path / "g.png").pixels.shape == (512, 512, 3)
    assert decode(tmp_path / "c.jpg").pixels.shape == (512, 512, 3)


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"hello, this is text\n", "not an image (content is text)"),
    (bytes(range(256)) * 4, "not an image (content is unknown data)"),
])
def test_bad_files_give_one_clear_reason(tmp_path, content, reason):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(PhotoError) as err:
        decode(p)
    assert str(err.value) == reason


def test_truncated_jpeg_is_an_error_even_after_face_recognition_loads(tmp_path, astronaut):
    from phototag.runtime import face_recognition_api

    face_recognition_api()  # face_recognition turns on LOAD_TRUNCATED_IMAGES; we must turn it off again
    good = save_jpeg(tmp_path / "g.jpg", astronaut).read_bytes()
    p = tmp_path / "t.jpg"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(PhotoError, match="truncated image data"):
        decode(p)
