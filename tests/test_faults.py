"""Bad input and injected faults: each gets one clear line naming the file, and the run carries on."""

from __future__ import annotations

import errno
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from phototag.cli import app
from phototag.store.index import Index

from .conftest import exif_bytes, exiftool, group_photo, save_jpeg

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def bad_library(root: Path, astronaut: np.ndarray) -> dict[str, str | None]:
    """Every kind of awkward file; the value is the exact reason expected (None: it must work)."""
    root.mkdir(parents=True, exist_ok=True)
    face = Image.fromarray(astronaut)
    expect: dict[str, str | None] = {}

    (root / "empty.jpg").write_bytes(b"")
    expect["empty.jpg"] = "empty file"
    good = io.BytesIO()
    face.save(good, "JPEG", quality=90)
    (root / "truncated.jpg").write_bytes(good.getvalue()[:20000])
    expect["truncated.jpg"] = "truncated image data"
    (root / "random.jpg").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect["random.jpg"] = "not an image (content is unknown data)"
    (root / "text.png").write_text("a text file named .png\n")
    expect["text.png"] = "not an image (content is text)"
    # EXIF that piexif cannot parse: the photo is indexed, its tags are not written
    save_jpeg(root / "bad-exif.jpg", astronaut, b"Exif\x00\x00II*\x00\xff\xff\xff\x7f broken")
    expect["bad-exif.jpg"] = "EXIF cannot be parsed, tags not written (error: unpack requires a buffer of 2 bytes)"
    face.convert("CMYK").save(root / "cmyk.jpg", quality=90)
    expect["cmyk.jpg"] = None
    face.convert("L").save(root / "grey.jpg", quality=90)
    expect["grey.jpg"] = None
    Image.fromarray((np.asarray(face.convert("L")).astype(np.uint16) * 257)).save(root / "sixteen-bit.png")
    expect["sixteen-bit.png"] = None
    pal = face.convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = 0
    pal.save(root / "palette.png", transparency=0)
    expect["palette.png"] = None
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=200, loop=0)
    expect["animated.gif"] = None
    # a decompression bomb: a tiny PNG claiming 200 000 x 200 000 pixels
    Image.new("1", (20000, 20000)).save(root / "bomb.png", optimize=True)
    expect["bomb.png"] = f"image too large to decode safely (400,000,000 pixels; the limit is {Image.MAX_IMAGE_PIXELS:,})"
    save_jpeg(root / "name with spaces 'and' \"quotes\".jpg", astronaut)
    expect["name with spaces 'and' \"quotes\".jpg"] = None
    save_jpeg(root / "new\nline.jpg", astronaut)
    expect["new\nline.jpg"] = None
    os.makedirs(os.fsencode(root) + b"/latin1-\xe9t\xe9", exist_ok=True)
    save_jpeg(Path(os.fsdecode(os.fsencode(root) + b"/latin1-\xe9t\xe9/photo.jpg")), astronaut)
    expect[os.fsdecode(b"latin1-\xe9t\xe9/photo.jpg")] = None
    deep = root / "/".join(["a-rather-long-folder-name-for-a-family-photo-archive"] * 6)
    save_jpeg(deep / "deep.jpg", astronaut)
    expect[str((deep / "deep.jpg").relative_to(root))] = None
    ro = save_jpeg(root / "read-only.jpg", astronaut, exif_bytes())
    os.chmod(ro, 0o444)
    expect["read-only.jpg"] = "read-only file, tags not written"
    return expect


def test_every_bad_input_gets_one_line_and_the_run_carries_on(tmp_path, astronaut, reliability):
    lib = tmp_path / "lib"
    expect = bad_library(lib, astronaut)
    before = {p: p.read_bytes() for p in lib.rglob("*") if p.is_file()}
    r = run("scan", lib, "--db", tmp_path / "i.db", "--workers", "1")
    assert r.exit_code == 1, r.output
    lines = r.stderr.splitlines()
    failures = {k: v for k, v in expect.items() if v is not None}
    assert len(lines) == len(failures), lines
    from phototag.cli.common import printable

    for name, reason in failures.items():
        line = f"phototag: {printable(str(lib / name))}: {reason}"
        assert any(ln.startswith(line) for ln in lines), (line, lines)
    with Index(tmp_path / "i.db") as ix:
        rows = {r["path"]: dict(r) for r in ix.conn.execute("SELECT * FROM photos")}
    for name, reason in expect.items():
        row = rows[Index.key(str(lib / name))]
        if reason is None:
            assert row["status"] == "ok" and row["face_count"] == 1, (name, row)
        elif "tags not written" in reason:  # indexed all the same
            assert row["status"] == "ok" and row["tags"] == f"failed: {reason}" and row["face_count"] == 1
        else:
            assert row["status"] == "failed" and row["error"].startswith(reason), (name, row)
    for p, data in before.items():  # nothing that failed was touched
        if p.name in ("bad-exif.jpg", "read-only.jpg") or expect.get(str(p.relative_to(lib)), "x") is not None:
            assert p.read_bytes() == data, p
    for name, reason in expect.items():
        path_bytes = len(os.fsencode(str(lib / name)))
        label = f"a path of {path_bytes} bytes" if len(name) > 60 else repr(Index.key(name)).replace("\\\\", "\\")
        reliability(f"bad input: {label}", 1, reason or "works: indexed, 1 face")


def test_disk_full_while_writing_leaves_the_photo_untouched(tmp_path, astronaut, monkeypatch, reliability):
    """ENOSPC at the write of the staged copy: the original stays as it was, the failure is reported."""
    import phototag.tags.atomic as tags

    lib = tmp_path / "lib"
    photo = save_jpeg(lib / "a.jpg", astronaut, exif_bytes())
    before = photo.read_bytes()
    real_fdopen = os.fdopen

    class FullDisk(io.RawIOBase):
        def __init__(self, fd):
            self.f = real_fdopen(fd, "wb")

        def write(self, b):
            self.f.write(bytes(b)[: len(b) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.f.close()

    monkeypatch.setattr(tags.os, "fdopen", lambda fd, mode: FullDisk(fd))
    r = run("scan", lib, "--db", tmp_path / "i.db", "--workers", "1")
    assert r.exit_code == 1
    assert r.stderr == f"phototag: {photo}: disk full while writing tags; the photo is untouched\n"
    assert photo.read_bytes() == before
    assert [p.name for p in lib.iterdir()] == ["a.jpg"]  # no staged copy left
    reliability("disk full (ENOSPC) while writing a photo", 1, "original untouched, reported, no staged copy left")


def test_a_file_deleted_between_listing_and_reading(tmp_path, astronaut, monkeypatch, reliability):
    import phototag.scan.pipeline as pipeline

    lib = tmp_path / "lib"
    save_jpeg(lib / "a.jpg", astronaut)
    victim = save_jpeg(lib / "b.jpg", astronaut)
    real = pipeline.analyse

    def delete_then_analyse(path, *args):
        if path.endswith("b.jpg"):
            os.unlink(path)
        return real(path, *args)

    monkeypatch.setattr(pipeline, "analyse", delete_then_analyse)
    r = run("scan", lib, "--db", tmp_path / "i.db", "--workers", "1")
    assert r.exit_code == 1
    assert r.stderr == f"phototag: {victim}: cannot read: No such file or directory\n"
    assert "1 tagged" in r.stdout
    reliability("a file deleted between listing and reading", 1, "reported, run carried on")


def test_a_file_replaced_between_reading_and_writing_is_left_as_it_is(tmp_path, astronaut, monkeypatch,
                                                                     reliability):
    """Another program saves a new version while the faces of the old one are being found: the new
    file is never overwritten with a tagged copy of the old one, and the next run scans it."""
    import phototag.scan.pipeline as pipeline

    lib = tmp_path / "lib"
    photo = save_jpeg(lib / "a.jpg", astronaut, exif_bytes())
    real = pipeline.analyse
    newer = None

    def analyse_then_replace(path, *args):
        nonlocal newer
        result = real(path, *args)
        replacement = lib / ".replacement.jpg"
        save_jpeg(replacement, astronaut[:, ::-1].copy(), exif_bytes(make=b"Edited"))
        os.replace(replacement, path)  # as an editor saves: a new file under the old name
        newer = Path(path).read_bytes()
        return result

    monkeypatch.setattr(pipeline, "analyse", analyse_then_replace)
    r = run("scan", lib, "--db", tmp_path / "i.db", "--workers", "1")
    assert r.exit_code == 1
    assert r.stderr == (f"phototag: {photo}: changed while it was being scanned; left as it is "
                        "(scanned again next run)\n")
    assert photo.read_bytes() == newer
    monkeypatch.setattr(pipeline, "analyse", real)
    r = run("scan", lib, "--db", tmp_path / "i.db", "--workers", "1")
    assert r.exit_code == 0 and "1 tagged" in r.stdout, r.output
    assert exiftool("-Make", "-s3", str(photo)).strip() == "Edited"
    reliability("a file replaced between reading and writing", 1,
                "the new file left untouched, reported, scanned on the next run")


def test_forty_faces_in_one_photo(tmp_path, astronaut, reliability):
    head = astronaut[20:260, 120:330]
    canvas = np.full((5 * 300, 8 * 260, 3), 110, np.uint8)
    for i in range(40):
        y, x = (i // 8) * 300 + 30, (i % 8) * 260 + 25
        canvas[y : y + 240, x : x + 210] = head
    lib = tmp_path / "lib"
    save_jpeg(lib / "class-photo.jpg", canvas)
    r = run("scan", lib, "--db", tmp_path / "i.db", "--workers", "1", "--batch-size", "16")
    assert r.exit_code == 0, r.output
    assert "1 tagged, 40 faces" in r.stdout
    reliability("a photo with 40 faces", 1, "all 40 found, tagged")


def test_sigterm_and_sigint_stop_cleanly(tmp_path, astronaut, reliability):
    lib = tmp_path / "lib"
    for i in range(30):
        save_jpeg(lib / f"{i:02d}.jpg", group_photo(astronaut, n=1, size=(700, 500)))
    for sig in (signal.SIGTERM, signal.SIGINT):
        db = tmp_path / f"{sig.name}.db"
        # As from a terminal: a shell's background job inherits SIGINT ignored (POSIX), and Python then
        # keeps it ignored, as phototag should. So the child starts with SIGINT's default whatever ran pytest.
        proc = subprocess.Popen([sys.executable, "-m", "phototag", "scan", str(lib), "--db", str(db),
                                 "--workers", "1", "--batch-size", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until some photos are committed
            time.sleep(0.5)
            try:
                con = sqlite3.connect(db)
                done = con.execute("SELECT count(*) FROM photos WHERE scanned_at IS NOT NULL").fetchone()[0]
                con.close()
            except sqlite3.Error:
                done = 0
            if done >= 2 or proc.poll() is not None:
                break
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (sig, out, err)
        assert out.startswith("interrupted: "), (sig, out, err)
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT exit_code FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0] == 130
        con.close()
        with Index(db) as ix:
            ix.lock()  # the lock was released
        reliability(f"{signal.Signals(sig).name} during a scan", 1,
                    "stopped cleanly: committed, lock released, exit 130, summary printed")


def test_exif_that_would_outgrow_its_64_kb_segment_is_refused(tmp_path, astronaut, reliability):
    """A camera's EXIF near the JPEG segment limit: adding our tags would not fit. Refused, untouched."""
    big = exif_bytes(comment=b"ASCII\x00\x00\x00" + b"x" * 65390)  # 65,516 bytes: fits, ours would not
    photo = save_jpeg(tmp_path / "lib" / "big-exif.jpg", astronaut, big)
    before = photo.read_bytes()
    r = run("scan", tmp_path / "lib", "--db", tmp_path / "i.db", "--workers", "1")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"phototag: {photo}: EXIF would be ") and "over the JPEG limit of 64 KB" in r.stderr
    assert photo.read_bytes() == before
    reliability("EXIF that would outgrow its 64 KB JPEG segment", 1, "refused, photo untouched, indexed")


def test_query_and_stats_work_while_a_scan_writes(tmp_path, astronaut, reliability):
    lib = tmp_path / "lib"
    for i in range(16):
        save_jpeg(lib / f"{i:02d}.jpg", group_photo(astronaut, n=1, size=(700, 500)))
    db = tmp_path / "i.db"
    proc = subprocess.Popen([sys.executable, "-m", "phototag", "scan", str(lib), "--db", str(db),
                             "--workers", "1", "--batch-size", "1", "-q"], stderr=subprocess.PIPE, text=True)
    counts, reads = [], 0
    while proc.poll() is None:
        time.sleep(0.3)
        if not db.exists():
            continue
        s = run("stats", "--db", db, "--json")
        q = run("query", "--db", db, "--format", "paths")
        assert s.exit_code == 0 and q.exit_code == 0, (s.output, q.output)
        counts.append(len(q.stdout.splitlines()))
        reads += 1
    assert proc.returncode == 0, proc.stderr.read()
    assert counts == sorted(counts) and counts[-1] <= 16  # only committed photos, never fewer later
    assert len(run("query", "--db", db, "--format", "paths").stdout.splitlines()) == 16
    assert reads >= 3
    reliability("query and stats while a scan writes", reads, "always answered, saw only committed photos")


def _peak_rss_of_scan(lib: Path, db: Path) -> tuple[int, subprocess.CompletedProcess]:
    """Peak resident memory (bytes) of a real `phototag scan` process, read by the child itself.

    VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a large
    pytest process would report the parent's size (2.8 GB once the engine tests ran), for both scans."""
    code = ("import re, sys\n"
            "from phototag.cli import app\n"
            "try:\n    app(sys.argv[1:])\n"
            "except SystemExit as e:\n    code = e.code\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1]\n"
            "print('PEAK', hwm, file=sys.stderr)\n"
            "sys.exit(code)\n")
    r = subprocess.run([sys.executable, "-c", code, "scan", str(lib), "--db", str(db), "--workers", "1", "-q"],
                       capture_output=True, text=True, timeout=600)
    peak = [ln for ln in r.stderr.splitlines() if ln.startswith("PEAK ")]
    assert peak, r.stderr
    return int(peak[-1].split()[1]) * 1024, r


def test_a_100_megapixel_panorama_works_with_memory_bounded(tmp_path, astronaut, reliability):
    """20000 x 5000 pixels: above Pillow's bomb warning, but a JPEG is never decoded whole here."""
    head = Image.fromarray(astronaut[20:260, 120:330]).resize((1050, 1200), Image.LANCZOS)
    pano = Image.new("RGB", (20000, 5000), (118, 130, 150))
    pano.paste(head, (9000, 2000))
    lib = tmp_path / "pano"
    lib.mkdir()
    pano.save(lib / "panorama.jpg", quality=85, exif=exif_bytes())
    del pano
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(group_photo(astronaut, n=1, size=(4000, 3000))).save(small / "photo.jpg", quality=85,
                                                                        exif=exif_bytes())
    base, r = _peak_rss_of_scan(small, tmp_path / "s.db")
    assert r.returncode == 0, r.stderr
    peak, r = _peak_rss_of_scan(lib, tmp_path / "p.db")
    assert r.returncode == 0, r.stderr
    with Index(tmp_path / "p.db") as ix:
        row = ix.photo(str(lib / "panorama.jpg"))
        face = ix.faces_of(str(lib / "panorama.jpg"))[0]
    assert (row["status"], row["width"], row["height"], row["face_count"]) == ("ok", 20000, 5000, 1)
    assert 9000 < face["left"] < face["right"] < 10050 and 2000 < face["top"] < face["bottom"] < 3200
    one_copy = 20000 * 5000 * 3  # a single full-resolution RGB decode: 300 MB
    grown = peak - base
    assert grown < one_copy * 0.6, f"the panorama scan peaked {grown / 1e6:.0f} MB above a 12 MP photo's"
    reliability("a 100-megapixel panorama (20000 x 5000 JPEG)", 1,
                f"tagged, 1 face; scan peak {peak / 1e6:.0f} MB against {base / 1e6:.0f} MB for a 12 MP "
                f"photo (one full decode alone would add {one_copy / 1e6:.0f} MB)")


def test_only_files_under_the_roots_are_written(tmp_path, astronaut, reliability):
    """Links may lead out of the folders given; a scan follows them to read, never to write."""
    from .conftest import tree_digest

    outside, root, dbdir = tmp_path / "outside", tmp_path / "root", tmp_path / "db"
    for d in (outside / "other", root, dbdir):
        d.mkdir(parents=True)
    save_jpeg(outside / "real.jpg", astronaut, exif_bytes())
    save_jpeg(outside / "other" / "far.jpg", astronaut, exif_bytes())
    save_jpeg(outside / "twin.jpg", astronaut, exif_bytes())
    os.link(outside / "twin.jpg", root / "hard.jpg")  # one file, a name inside and a name outside
    save_jpeg(root / "own.jpg", astronaut, exif_bytes())
    save_jpeg(root / "sub" / "target.jpg", astronaut, exif_bytes())
    (root / "to-file.jpg").symlink_to(outside / "real.jpg")
    (root / "to-folder").symlink_to(outside / "other")
    (root / "inner.jpg").symlink_to(root / "sub" / "target.jpg")
    before = tree_digest(tmp_path)
    r = run("scan", root, "--db", dbdir / "i.db", "--workers", "1", "--follow-symlinks")
    assert r.exit_code == 1, r.output
    assert sorted(r.stderr.splitlines()) == sorted([
        f"phototag: {root / 'hard.jpg'}: hard-linked file (2 names), tags not written: replacing it would split the links",
        f"phototag: {root / 'to-file.jpg'}: outside the folders given (reached through a symlink), tags not written",
        f"phototag: {root / 'to-folder' / 'far.jpg'}: outside the folders given (reached through a symlink), "
        "tags not written",
    ])
    after = tree_digest(tmp_path)
    changed = {k for k in before.keys() & after.keys() if before[k] != after[k]}
    created = {k for k in after.keys() - before.keys()}
    assert changed == {"root/own.jpg", "root/sub/target.jpg"}, changed  # inner.jpg wrote its target
    assert created <= {"db/i.db", "db/i.db-wal", "db/i.db-shm", "db/i.db.lock"}, created
    for link in ("to-file.jpg", "to-folder", "inner.jpg"):
        assert (root / link).is_symlink()  # a link is never replaced by a copy
    assert os.stat(root / "hard.jpg").st_nlink == 2
    assert exiftool("-XPKeywords", "-s3", str(root / "inner.jpg")).startswith("Age group: ")
    reliability("links and hard links leading out of the folders given", 3,
                "read and indexed; only files under the roots written; links kept; reported")
