import numpy as np

from phototag import faces
from phototag.faces import detection  # the module, for its private parts
from .conftest import ASTRONAUT_BOX, ASTRONAUT_BOX_CNN, group_photo


def test_dlib_finds_the_astronauts_face(astronaut):
    boxes = faces.detect(astronaut, model="hog")
    assert [b.as_list() for b in boxes] == [list(ASTRONAUT_BOX)]


def test_the_default_detection_keeps_hogs_box_for_a_face_both_detectors_find(astronaut):
    # the CNN finds the same face with its own box; HOG's is kept, as the age model was trained on it
    assert [b.as_list() for b in faces.detect(astronaut, model="cnn")] == [list(ASTRONAUT_BOX_CNN)]
    assert [b.as_list() for b in faces.detect(astronaut)] == [list(ASTRONAUT_BOX)]


def test_the_default_detection_adds_the_faces_only_the_cnn_finds(astronaut):
    """A head tilted 50 degrees: HOG misses it, the CNN finds it. Small (0.7 MP): the CNN sees it whole."""
    from PIL import Image

    photo = np.full((700, 1000, 3), 120, np.uint8)
    photo[100:612, :512] = astronaut
    photo[100:612, 488:1000] = np.asarray(Image.fromarray(astronaut).rotate(50, resample=Image.BILINEAR))
    hog, cnn = faces.detect(photo, model="hog"), faces.detect(photo, model="cnn")
    assert len(hog) == 1 and len(cnn) == 2
    auto = faces.detect(photo)
    assert len(auto) == 2
    assert hog[0] in auto  # the upright face: HOG's box
    tilted = next(b for b in auto if b != hog[0])
    assert tilted in cnn and tilted.left > 500  # the tilted one: the CNN's box


def test_the_default_detection_on_a_large_photo_uses_a_smaller_copy_for_the_cnn(astronaut):
    """1.76 MP: the CNN sees a 0.5 MP copy, HOG the whole photo; each face is reported once."""
    from PIL import Image

    head = np.asarray(Image.fromarray(astronaut[20:260, 120:330]).resize((420, 480), Image.BILINEAR))
    photo = np.full((1100, 1600, 3), 120, np.uint8)
    for x in (150, 950):
        photo[200:680, x : x + 420] = head
    cnn = detection._cnn_boxes(photo, 0, detection.CNN_PIXELS)
    hog = faces.detect(photo, model="hog")
    assert len(cnn) == 2 and len(hog) == 2  # both detectors find both faces, in different boxes
    assert all(b.width > 150 for b, _ in cnn) and {b for b, _ in cnn} != set(hog)
    assert set(faces.detect(photo)) == set(hog)
    # two faces too small for the CNN's copy (about 50 px there), which only HOG finds
    small = np.asarray(Image.fromarray(photo).resize((800, 550), Image.BILINEAR))
    wide = np.full((1100, 1600, 3), 120, np.uint8)
    wide[:550, :800] = small
    assert detection._cnn_boxes(wide, 0, detection.CNN_PIXELS) == [] and len(faces.detect(wide)) == 2


def test_the_default_detection_doubles_hog_for_small_faces(astronaut):
    from PIL import Image

    # faces of about 45 px in a small photo: too small for the CNN, found by HOG doubled
    small = np.asarray(Image.fromarray(group_photo(astronaut, n=3)).resize((800, 450), Image.BILINEAR))
    assert faces.detect(small, model="cnn") == []
    assert faces.detect(small) == []
    assert len(faces.detect(small, upsample=1)) == 3


def test_an_unknown_detector_is_an_error(astronaut):
    import pytest

    with pytest.raises(ValueError, match="unknown detector 'mtcnn': use auto, hog or cnn"):
        faces.detect(astronaut, model="mtcnn")


def test_the_mission_patch_is_not_a_face(astronaut):
    # At upsample 1 dlib's HOG also fires, weakly, on the patch on the suit; dlib's CNN does not confirm it.
    hog_only = faces.detect(astronaut, model="hog", upsample=1, verify_faces=False)
    assert [b.as_list() for b in hog_only] == [[76, 265, 166, 175], [335, 215, 425, 126]]
    assert faces.verify(astronaut, hog_only[0]) > 0.5
    assert faces.verify(astronaut, hog_only[1]) == float("-inf")
    assert faces.detect(astronaut, model="hog", upsample=1) == hog_only[:1]


def test_a_score_threshold_also_drops_weak_boxes(astronaut):
    assert len(faces.detect(astronaut, model="hog", upsample=1, min_score=0.15, verify_faces=False)) == 1


def test_three_faces_in_a_composite(astronaut):
    boxes = faces.detect(group_photo(astronaut, n=3), model="hog")
    assert len(boxes) == 3
    lefts = sorted(b.left for b in boxes)
    assert all(b - a > 250 for a, b in zip(lefts, lefts[1:]))


def test_min_size_drops_small_faces(astronaut):
    assert faces.detect(astronaut, min_size=100) == []


def test_align_and_crop_makes_an_upright_150px_chip(astronaut):
    box = faces.detect(astronaut)[0]
    crop = faces.align_and_crop(astronaut, box)
    assert crop.chip.shape == (150, 150, 3) and crop.chip.dtype == np.uint8
    assert len(crop.landmarks) == 5
    # the eyes (landmarks 0-3) lie inside the detected box, level within a few pixels
    for x, y in crop.landmarks[:4]:
        assert box.left <= x <= box.right and box.top <= y <= box.bottom
    assert abs(crop.landmarks[0][1] - crop.landmarks[2][1]) < 10


def test_descriptor_is_128_d_and_stable(astronaut):
    chip = faces.align_and_crop(astronaut, faces.detect(astronaut)[0]).chip
    d = faces.describe([chip, chip[:, ::-1].copy()])
    assert d.shape == (2, 128)
    assert np.linalg.norm(d[0] - d[1]) < 0.35  # a mirrored face is the same person to dlib
    assert faces.describe([]).shape == (0, 128)


def test_a_face_cut_from_its_neighbourhood_is_the_chip_cut_from_the_whole_copy(tmp_path, astronaut):
    """A scan decodes only each face's neighbourhood into an array (decode.load_face_regions): the
    landmarks and the aligned chip must be bit-identical to those from the whole reduced copy, for
    faces in the middle, at the edge, and in a photo stored rotated (EXIF orientation 6)."""
    from PIL import Image

    from phototag.scan.decode import load_face_regions, load_for_crops

    from .conftest import exif_bytes, save_jpeg

    head = np.asarray(Image.fromarray(astronaut[20:260, 120:330]).resize((840, 960)))  # faces 350 px wide
    canvas = np.full((2400, 6000, 3), 120, np.uint8)
    spots = [(700, 2500), (1440, 5160), (0, 0)]  # the middle, the bottom-right and top-left corners
    for y, x in spots:
        canvas[y : y + 960, x : x + 840] = head
    plain = save_jpeg(tmp_path / "wide.jpg", canvas, exif_bytes())
    stored = np.ascontiguousarray(np.rot90(canvas, 1))  # orientation 6 shows it turned back upright
    rotated = save_jpeg(tmp_path / "rotated.jpg", stored, exif_bytes(orientation=6))
    for photo in (plain, rotated):
        found = [faces.Box(y + 252, x + 584, y + 600, x + 236) for y, x in spots]  # the face in each head
        whole, factor = load_for_crops(photo, [b.width for b in found])
        regions = load_face_regions(photo, [(b.top, b.right, b.bottom, b.left) for b in found])
        assert factor == regions.factor == 2.0 and regions.size == (whole.shape[1], whole.shape[0])
        assert sum(p.size for p in regions.pixels) < whole.size / 4  # only neighbourhoods became arrays
        for fb, pixels, (x0, y0) in zip(found, regions.pixels, regions.origins):
            b = fb.scaled(1 / factor, whole.shape[1], whole.shape[0])
            expected = faces.align_and_crop(whole, b)
            got = faces.align_and_crop(pixels, faces.Box(b.top - y0, b.right - x0, b.bottom - y0, b.left - x0))
            assert got.chip.shape == expected.chip.shape and np.array_equal(got.chip, expected.chip)
            assert [(x + x0, y + y0) for x, y in got.landmarks] == list(expected.landmarks)
