import numpy as np

from phototag import faces

from .conftest import ASTRONAUT_BOX, group_photo


def test_dlib_finds_the_astronauts_face(astronaut):
    boxes = faces.detect(astronaut)
    assert [b.as_list() for b in boxes] == [list(ASTRONAUT_BOX)]


def test_the_mission_patch_is_not_a_face(astronaut):
    # At upsample 1 dlib's HOG also fires, weakly, on the patch on the suit; dlib's CNN does not confirm it.
    hog_only = faces.detect(astronaut, upsample=1, verify_faces=False)
    assert [b.as_list() for b in hog_only] == [[76, 265, 166, 175], [335, 215, 425, 126]]
    assert faces.verify(astronaut, hog_only[0]) > 0.5
    assert faces.verify(astronaut, hog_only[1]) == float("-inf")
    assert faces.detect(astronaut, upsample=1) == hog_only[:1]


def test_a_score_threshold_also_drops_weak_boxes(astronaut):
    assert len(faces.detect(astronaut, upsample=1, min_score=0.15, verify_faces=False)) == 1


def test_two_faces_in_a_composite(astronaut):
    boxes = faces.detect(group_photo(astronaut, n=3))
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
