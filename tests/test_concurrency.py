"""One scan per index, waiting for another, parallel scans of different indexes, and no network."""

import subprocess
import sys
import threading
import time

from typer.testing import CliRunner

from phototag.cli import app
from phototag.store.index import Index
from phototag.tags.exif import image_data, read_tags

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_second_scan_waits_for_the_first_with_wait(library, tmp_path, reliability):
    db = tmp_path / "i.db"
    holder = Index(db)
    holder.lock()
    threading.Timer(1.5, holder.unlock).start()  # the other scan finishes after 1.5 s
    t = time.monotonic()
    r = run("scan", library / "2020", "--db", db, "--workers", "1", "--wait", "30")
    holder.close()
    assert r.exit_code == 0, r.output
    assert time.monotonic() - t >= 1.4
    reliability("a second scan on a locked index", 2, "exit 3 with a clear message, or waits with --wait")


def test_two_scans_of_different_indexes_over_the_same_photos(library, tmp_path, reliability):
    folder = library / "2019"
    originals = {p: p.read_bytes() for p in folder.rglob("*.*")}
    procs = [subprocess.Popen([sys.executable, "-m", "phototag", "scan", str(folder), "--db",
                               str(tmp_path / f"{i}.db"), "--workers", "1", "--scheme", s],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, s in enumerate(("ten", "three"))]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, (out, err)
    for path, data in originals.items():  # each photo was replaced whole, by one writer or the other
        now = path.read_bytes()
        assert image_data(now) == image_data(data)
        keywords, rec = read_tags(path)
        assert rec is not None and keywords[: len(keywords) - len(rec.keywords)] in (["Holiday", "Grandma"], [])
    assert not [p for p in folder.rglob(".*")]
    reliability("two scans on different indexes over the same photos", 1, "every photo whole, tagged by one")


NO_NETWORK = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("network blocked by the test")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
from phototag.cli import app
sys.argv = ["phototag", *sys.argv[1:]]
app()
"""


def test_a_scan_needs_no_network(library, tmp_path, reliability):
    """A fresh process with every socket refused from its first line: dlib, TensorFlow and the model load."""
    r = subprocess.run([sys.executable, "-c", NO_NETWORK, "scan", str(library / "2019"), "--db",
                        str(tmp_path / "i.db"), "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "2 tagged, 3 faces" in r.stdout and r.stderr == ""
    reliability("a scan with the network blocked", 1, "works: nothing is downloaded at run time")


def _race_once(monkeypatch, between):
    """Run `between(path)` once, after the writer has read and staged the photo and before it replaces
    it: the window in which another scan or tool can rewrite the file. No timing luck involved."""
    import phototag.tags.exif as tags

    real = tags.atomic_replace
    calls = []

    def racing(path, data, verify=None, expect=None):
        calls.append(path)
        if len(calls) == 1:
            between(path)
        return real(path, data, verify, expect=expect)

    monkeypatch.setattr(tags, "atomic_replace", racing)
    return calls


def test_a_metadata_only_change_between_read_and_write_is_merged_not_failed(tmp_path, astronaut, monkeypatch,
                                                                          reliability):
    from phototag.tags.exif import ExifWriter, TagRecord

    from .conftest import exif_bytes, exiftool, save_jpeg

    photo = save_jpeg(tmp_path / "p.jpg", astronaut, exif_bytes(keywords=["Holiday"]))
    pixels = image_data(photo.read_bytes())
    other = TagRecord(model="m@1", scheme="three", keywords=["Age group: Middle"], faces=[])
    ours = TagRecord(model="m@1", scheme="ten", keywords=["Age group: Mature Adult"], faces=[])

    def other_scan_and_user(path):  # another scan tags it, and the user adds a keyword in another tool
        ExifWriter().write(path, "JPEG", other)
        exif = __import__("piexif").load(str(path))
        exif["0th"][0x9C9E] = tuple("Holiday;Beach;Age group: Middle".encode("utf-16-le") + b"\0\0")
        data = path.read_bytes()
        from phototag.tags.exif import splice_exif
        path.write_bytes(splice_exif(data, __import__("piexif").dump(exif)))

    calls = _race_once(monkeypatch, other_scan_and_user)
    assert ExifWriter().write(photo, "JPEG", ours) == "written"
    assert len(calls) >= 3  # ours (raced), the other scan's own write, ours again on the new bytes
    keywords, rec = read_tags(photo)
    assert "Holiday" in keywords and "Beach" in keywords and "Age group: Mature Adult" in keywords
    assert rec.scheme == "ten"
    assert image_data(photo.read_bytes()) == pixels
    assert "Age group: Mature Adult" in exiftool("-XPKeywords", "-s3", str(photo))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staged copy left
    reliability("a photo's metadata rewritten between reading and writing", 1,
                "written again on the new bytes: keywords added meanwhile kept, exit 0")


def test_new_image_data_between_read_and_write_is_left_untouched(tmp_path, astronaut, monkeypatch):
    import pytest

    from phototag.tags.exif import ExifWriter, PhotoChangedError, TagRecord

    from .conftest import exif_bytes, save_jpeg

    photo = save_jpeg(tmp_path / "p.jpg", astronaut, exif_bytes())
    edited = save_jpeg(tmp_path / "edited.jpg", astronaut[::-1].copy(), exif_bytes(make=b"Edited")).read_bytes()
    _race_once(monkeypatch, lambda path: path.write_bytes(edited))
    rec = TagRecord(model="m@1", scheme="ten", keywords=["Age group: Adult"], faces=[])
    with pytest.raises(PhotoChangedError, match="image data changed while it was being tagged; it is untouched"):
        ExifWriter().write(photo, "JPEG", rec)
    assert photo.read_bytes() == edited


def test_two_scans_race_on_every_photo_and_both_finish(library, tmp_path, monkeypatch):
    """The CLI end to end: a second scan (of another index) tags each photo inside the first one's
    read-to-write window; the first scan still exits 0 and every photo ends with its tags."""
    import phototag.tags.exif as tags

    folder = library / "2019"
    other = tags.TagRecord(model="m@1", scheme="three", keywords=["Age group: Middle"], faces=[])
    real = tags.atomic_replace
    raced: set = set()

    def racing(path, data, verify=None, expect=None):
        if path not in raced:
            raced.add(path)
            tags.ExifWriter().write(path, "JPEG", other)
        return real(path, data, verify, expect=expect)

    monkeypatch.setattr(tags, "atomic_replace", racing)
    r = run("scan", folder, "--db", tmp_path / "i.db", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "2 tagged, 3 faces, 0 failed" in r.stdout
    assert len(raced) == 2
    for p in folder.rglob("*.*"):
        keywords, rec = read_tags(p)
        assert rec.scheme == "ten" and "Age group: Middle" not in keywords
