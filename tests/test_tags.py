import json
import os

import numpy as np
import piexif
import pytest
from PIL import Image, ImageCms

from phototag.errors import PhotoError, TagWriteError
from phototag.tags.exif import (ExifWriter, TagRecord, decode_xp, encode_xp, image_data, merge_keywords, read_tags,
                           _segments)

from .conftest import exif_bytes, exiftool, save_jpeg

XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Wedding</dc:title>'
       b"</rdf:Description></rdf:RDF></x:xmpmeta>")


def record(*groups: str) -> TagRecord:
    return TagRecord(model="m@1", scheme="ten", keywords=[f"Age group: {g}" for g in groups],
                     faces=[{"box": [1, 2, 3, 4], "age": 3.2, "interval": [2, 5], "group": groups[0], "p": 0.8}])


@pytest.fixture
def rich_jpeg(tmp_path, astronaut):
    """A JPEG with JFIF, EXIF (with a thumbnail), an ICC profile and XMP: everything must survive."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    thumb = Image.fromarray(astronaut).resize((64, 64))
    import io

    buf = io.BytesIO()
    thumb.save(buf, "JPEG")
    exif = piexif.load(exif_bytes(keywords=["Holiday", "Grandma"]))
    exif["1st"] = {piexif.ImageIFD.XResolution: (72, 1), piexif.ImageIFD.YResolution: (72, 1)}
    exif["thumbnail"] = buf.getvalue()
    path = tmp_path / "rich.jpg"
    Image.fromarray(astronaut).save(path, "JPEG", quality=90, exif=piexif.dump(exif), icc_profile=icc, xmp=XMP)
    return path


def segment_markers(data: bytes) -> list[int]:
    return [m for m, _, _ in _segments(data)[0]]


def test_write_keeps_every_other_byte_and_the_mtime(rich_jpeg):
    before = rich_jpeg.read_bytes()
    os.utime(rich_jpeg, ns=(1_500_000_000_000_000_000, 1_500_000_000_123_456_789))
    mode = os.stat(rich_jpeg).st_mode
    assert ExifWriter().write(rich_jpeg, "JPEG", record("Toddler", "Senior")) == "written"
    after = rich_jpeg.read_bytes()
    assert image_data(after) == image_data(before)  # JFIF, ICC, XMP and the scan data, byte for byte
    assert segment_markers(after) == segment_markers(before)
    assert after[2:4] == b"\xff\xe0" and after[6:11] == b"JFIF\x00"  # JFIF APP0 still first
    assert os.stat(rich_jpeg).st_mtime_ns == 1_500_000_000_123_456_789
    assert os.stat(rich_jpeg).st_mode == mode
    assert np.array_equal(np.asarray(Image.open(rich_jpeg)), np.asarray(Image.open(__import__("io").BytesIO(before))))
    assert not [p for p in rich_jpeg.parent.iterdir() if p.name.startswith(".")]


def test_tags_read_back_by_exiftool_and_piexif(rich_jpeg):
    ExifWriter().write(rich_jpeg, "JPEG", record("Toddler", "Senior"))
    out = json.loads(exiftool("-j", "-XPKeywords", "-UserComment", "-Make", "-DateTimeOriginal",
                              "-ThumbnailImage", "-ICC_Profile:ProfileDescription", "-XMP:Title", str(rich_jpeg)))[0]
    assert out["XPKeywords"] == "Holiday;Grandma;Age group: Toddler;Age group: Senior"
    assert out["Make"] == "NASA"
    assert out["DateTimeOriginal"] == "1984:02:07 10:00:00"
    assert out["ProfileDescription"] == "sRGB built-in"
    assert out["Title"] == "Wedding"
    assert str(out["ThumbnailImage"]).startswith("(Binary data")
    comment = json.loads(out["UserComment"])
    assert comment == {"phototag": 1, "model": "m@1", "scheme": "ten",
                       "keywords": ["Age group: Toddler", "Age group: Senior"],
                       "faces": [{"box": [1, 2, 3, 4], "age": 3.2, "interval": [2, 5], "group": "Toddler", "p": 0.8}]}
    exif = piexif.load(str(rich_jpeg))
    assert decode_xp(exif["0th"][piexif.ImageIFD.XPKeywords]) == ["Holiday", "Grandma", "Age group: Toddler",
                                                                   "Age group: Senior"]


def test_retagging_replaces_our_keywords_keeps_the_users(rich_jpeg):
    w = ExifWriter()
    w.write(rich_jpeg, "JPEG", record("Toddler", "Senior"))
    w.write(rich_jpeg, "JPEG", record("Child"))
    keywords, rec = read_tags(rich_jpeg)
    assert keywords == ["Holiday", "Grandma", "Age group: Child"]
    assert rec.keywords == ["Age group: Child"]
    assert w.write(rich_jpeg, "JPEG", record("Child")) == "unchanged"


def test_remove_takes_out_exactly_what_we_added(rich_jpeg):
    original = piexif.load(str(rich_jpeg))
    w = ExifWriter()
    w.write(rich_jpeg, "JPEG", record("Toddler"))
    assert w.remove(rich_jpeg, "JPEG")
    assert read_tags(rich_jpeg) == (["Holiday", "Grandma"], None)
    assert not w.remove(rich_jpeg, "JPEG")  # nothing of ours left: the file is not touched again
    restored = piexif.load(str(rich_jpeg))
    assert restored["0th"] == original["0th"] and restored["Exif"] == original["Exif"]


def test_jpeg_without_exif_gets_an_exif_segment_after_jfif(tmp_path, astronaut):
    p = save_jpeg(tmp_path / "plain.jpg", astronaut)
    before = p.read_bytes()
    ExifWriter().write(p, "JPEG", record("Adult"))
    after = p.read_bytes()
    assert segment_markers(after)[:2] == [0xE0, 0xE1]
    assert image_data(after) == image_data(before)
    assert read_tags(p)[0] == ["Age group: Adult"]


def test_a_users_own_user_comment_is_kept(tmp_path, astronaut):
    p = save_jpeg(tmp_path / "c.jpg", astronaut, exif_bytes(comment=b"ASCII\0\0\0Grandma's 80th birthday"))
    note = ExifWriter().write(p, "JPEG", record("Senior"))
    assert note == "written (keywords only: the photo's own UserComment was kept)"
    assert exiftool("-s3", "-UserComment", str(p)).strip() == "Grandma's 80th birthday"
    assert read_tags(p)[0] == ["Age group: Senior"]


def test_read_only_photo_is_not_written(tmp_path, astronaut):
    p = save_jpeg(tmp_path / "ro.jpg", astronaut, exif_bytes())
    before = p.read_bytes()
    os.chmod(p, 0o444)
    with pytest.raises(TagWriteError, match="read-only file, tags not written"):
        ExifWriter().write(p, "JPEG", record("Adult"))
    assert p.read_bytes() == before


def test_png_is_never_written(tmp_path, astronaut):
    p = tmp_path / "a.png"
    Image.fromarray(astronaut).save(p)
    before = p.read_bytes()
    assert ExifWriter().write(p, "PNG", record("Adult")) == "not written (PNG cannot hold EXIF tags)"
    assert p.read_bytes() == before


def test_unparseable_exif_is_reported_and_the_photo_left_alone(tmp_path, astronaut):
    p = save_jpeg(tmp_path / "broken.jpg", astronaut, b"Exif\x00\x00II*\x00\xff\xff\xff\x7f garbage")
    before = p.read_bytes()
    with pytest.raises(TagWriteError, match="EXIF cannot be parsed, tags not written"):
        ExifWriter().write(p, "JPEG", record("Adult"))
    assert p.read_bytes() == before


def test_truncated_header_is_a_photo_error():
    with pytest.raises(PhotoError, match="truncated JPEG"):
        _segments(b"\xff\xd8\xff\xe1\x10\x00Exif")


def test_xp_codec_round_trip_and_merge():
    kws = ["Holiday", "Ölçü 😀", "Age group: Toddler"]
    assert decode_xp(encode_xp(kws)) == kws
    assert merge_keywords(["A", "Age group: Baby", "B"], ["Age group: Child"], ["Age group: Baby"]) == [
        "A", "B", "Age group: Child"]
    assert merge_keywords(["Age group: Baby"], ["Age group: Child"], []) == ["Age group: Baby", "Age group: Child"]


def test_webp_is_written_through_piexif_and_read_back_by_exiftool(tmp_path, astronaut):
    p = tmp_path / "a.webp"
    Image.fromarray(astronaut).save(p, quality=90)
    pixels = np.asarray(Image.open(p))
    assert ExifWriter().write(p, "WEBP", record("Adult")) == "written"
    assert exiftool("-s3", "-XPKeywords", str(p)).strip() == "Age group: Adult"
    assert np.array_equal(np.asarray(Image.open(p)), pixels)
    assert ExifWriter().remove(p, "WEBP") and read_tags(p) == ([], None)


def test_a_keyword_the_user_already_had_survives_untag(tmp_path, astronaut):
    p = save_jpeg(tmp_path / "k.jpg", astronaut, exif_bytes(keywords=["Age group: Toddler", "Zoo"]))
    w = ExifWriter()
    w.write(p, "JPEG", record("Toddler", "Adult"))
    keywords, rec = read_tags(p)
    assert keywords == ["Age group: Toddler", "Zoo", "Age group: Adult"] and rec.keywords == ["Age group: Adult"]
    assert w.remove(p, "JPEG")
    assert read_tags(p) == (["Age group: Toddler", "Zoo"], None)


def test_nothing_to_change_means_the_file_is_not_rewritten(tmp_path, astronaut):
    # piexif would re-serialise this EXIF differently; with nothing of ours to remove, bytes stay as they are
    p = save_jpeg(tmp_path / "n.jpg", astronaut, exif_bytes(keywords=["Zoo"]))
    before, st = p.read_bytes(), p.stat()
    assert not ExifWriter().remove(p, "JPEG")
    assert p.read_bytes() == before and p.stat().st_ino == st.st_ino
