import numpy as np
import pytest
from PIL import Image

from training.readers import open_data, split_of
from training.readers.utkface import parse_name


def test_utkface_names_and_malformed_ones_are_counted(tmp_path):
    good = ["1_0_2_20161219140530307.jpg.chip.jpg", "26_1_0_20170116174525125.jpg.chip.jpg"]
    bad = {"39_1_20170116174525125.jpg.chip.jpg": "missing field",
           "24_0_1_20170116220224657 .jpg.chip.jpg": "stray space",
           "55_0_0_20170116232725357jpg.chip.jpg": "malformed name"}
    for n in good + list(bad):
        Image.new("RGB", (8, 8)).save(tmp_path / n, "JPEG")
    records, stats = open_data(f"utkface:{tmp_path}")
    assert [(r.age, r.gender) for r in records] == [(1, 0), (26, 1)]
    assert stats.skipped == {"missing field": 1, "stray space": 1, "malformed name": 1}
    assert all(r.source == "utkface" and r.fallback_box for r in records)
    for name, reason in bad.items():
        assert parse_name(name) == reason


def test_utkface_pixels_csv(tmp_path):
    px = " ".join(["128"] * 48 * 48)
    (tmp_path / "age_gender.csv").write_text(
        "age,ethnicity,gender,img_name,pixels\n"
        f"5,0,1,a.jpg,{px}\n"
        "7,0,0,b.jpg,1 2 3\n"
        f"x,0,0,c.jpg,{px}\n")
    records, stats = open_data(f"utkface_csv:{tmp_path}")
    assert len(records) == 1 and records[0].age == 5 and records[0].gender == 1
    assert records[0].image.shape == (48, 48)
    assert stats.skipped == {"wrong pixel count": 1, "unreadable row": 1}


def test_wiki_mat_cleaning(tmp_path):
    from scipy.io import savemat

    n = 5
    full_path = np.empty((1, n), dtype=object)
    for i in range(n):
        full_path[0, i] = np.array([f"00/p{i}.jpg"])
    import datetime as dt

    # Matlab's datenum counts from year 0: Python's ordinal + 366. Born 1970-03-01, photo taken in 2000.
    dob = np.array([[dt.date(1970, 3, 1).toordinal() + 366] * n], dtype=float)
    wiki = {
        "dob": dob,
        "photo_taken": np.array([[2000, 2000, 2000, 2000, 2200]]),
        "full_path": full_path,
        "gender": np.array([[1.0, 0.0, 1.0, 1.0, 1.0]]),
        "face_score": np.array([[4.0, 3.0, -np.inf, 0.5, 4.0]]),
        "second_face_score": np.array([[np.nan, 2.0, np.nan, np.nan, np.nan]]),
    }
    savemat(tmp_path / "wiki.mat", {"wiki": wiki})
    records, stats = open_data(f"wiki:{tmp_path}")
    assert [(r.key, r.age, r.gender) for r in records] == [("wiki/00/p0.jpg", 30, 0)]
    assert stats.skipped == {"two faces": 1, "no face": 1, "face_score below threshold": 1, "age outside 0-100": 1}


def test_labelled_csv_groups(tmp_path):
    (tmp_path / "Train").mkdir()
    for n in ("1.jpg", "2.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "Train" / n)
    (tmp_path / "train.csv").write_text("ID,Class\n1.jpg,YOUNG\n2.jpg,OLD\n3.jpg,MIDDLE\n4.jpg,ANCIENT\n")
    records, stats = open_data(f"labelled_csv:{tmp_path / 'train.csv'}")
    assert [(r.key, r.group, r.age) for r in records] == [("labelled/1.jpg", "Young", None), ("labelled/2.jpg", "Old", None)]
    assert stats.skipped == {"image missing": 1, "unknown class": 1}


def test_split_is_stable_and_roughly_80_10_10():
    keys = [f"utkface/{i}.jpg" for i in range(5000)]
    parts = [split_of(k) for k in keys]
    assert parts == [split_of(k) for k in keys]
    share = {s: parts.count(s) / len(parts) for s in ("train", "val", "test")}
    assert 0.77 < share["train"] < 0.83 and 0.08 < share["val"] < 0.12 and 0.08 < share["test"] < 0.12


@pytest.mark.parametrize("spec,msg", [("nope", "is not READER:PATH"), ("foo:/tmp", "unknown reader 'foo'"),
                                      ("utkface:/does/not/exist", "no such file or folder")])
def test_bad_specs(spec, msg):
    with pytest.raises(ValueError, match=msg):
        open_data(spec)


def test_fgnet_names_give_age_and_person(tmp_path):
    for n in ("001A02.JPG", "001A43a.JPG", "012A05.jpg", "notes.JPG", "01A02.JPG"):
        Image.new("RGB", (8, 8)).save(tmp_path / n, "JPEG")
    records, stats = open_data(f"fgnet:{tmp_path}")
    assert [(r.key, r.age, r.person) for r in records] == [
        ("fgnet/001A02.JPG", 2, "fgnet/001"), ("fgnet/001A43a.JPG", 43, "fgnet/001"), ("fgnet/012A05.jpg", 5, "fgnet/012")]
    assert stats.skipped == {"name is not PPPAnn.JPG": 2}


def test_adience_fold_gives_groups_and_counts_what_it_skips(tmp_path):
    head = "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle\tfiducial_score\n"
    rows = [("u1", "a.jpg", "1", "(0, 2)", "m"), ("u1", "b.jpg", "2", "(25, 32)", "f"), ("u1", "c.jpg", "3", "None", "f"),
            ("u1", "d.jpg", "4", "35", "m"), ("u1", "e.jpg", "5", "(60, 100)", ""), ("u1", "gone.jpg", "6", "(8, 12)", "m")]
    (tmp_path / "labels.tsv").write_text(head + "".join("\t".join([*r, "0", "0", "9", "9", "0", "0", "1"]) + "\n"
                                                         for r in rows))
    for user, image, face, *_ in rows[:5]:
        Image.new("RGB", (8, 8)).save(tmp_path / f"coarse_tilt_aligned_face.{face}.{image}", "JPEG")
    records, stats = open_data(f"adience:{tmp_path}")
    assert [(r.group, r.gender, r.person) for r in records] == [
        ("0-2", 0, "adience/u1/1"), ("25-32", 1, "adience/u1/2"), ("60+", None, "adience/u1/5")]
    assert stats.skipped == {"no age group (None, an exact age, or an unknown bin)": 2, "image missing": 1}


def test_black_and_white_is_told_from_the_pixels(astronaut):
    from training.evaluate import black_and_white

    colour = np.asarray(Image.fromarray(astronaut).resize((64, 64)))
    grey = np.stack([colour.mean(axis=-1).astype(np.uint8)] * 3, axis=-1)
    rng = np.random.default_rng(1)
    scanned = np.clip(grey + rng.integers(-2, 3, grey.shape), 0, 255).astype(np.uint8)  # a grey print, scanned
    faded = np.clip(0.5 * colour + 0.5 * grey + 40, 0, 255).astype(np.uint8)  # washed-out colour
    assert black_and_white(np.stack([colour, grey, scanned, faded])).tolist() == [False, True, True, False]


def test_group_labels_are_scored_exact_and_one_off():
    from types import SimpleNamespace

    from training.evaluate import group_metrics

    dist = np.zeros((4, 101))
    dist[0, 1] = dist[1, 5] = dist[2, 28] = dist[3, 70] = 1.0  # ages 1, 5, 28, 70
    prep = SimpleNamespace(groups=np.array(["0-2", "0-2", "25-32", "38-43"]))
    m = group_metrics(prep, dist)
    assert m["scheme"] == "adience" and m["faces"] == 4
    assert m["exact"] == 0.5 and m["one_off"] == 0.75  # 5 is one group off 0-2; 70 is three off 38-43
