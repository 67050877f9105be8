import os

from phototag.scan.walk import WalkError, sniff, walk


def names(root, **kw):
    return [p.relative_to(root).as_posix() if not isinstance(p, WalkError) else ("ERR", p.reason)
            for p in walk([root], **kw)]


def test_walk_finds_images_by_extension_and_content_skips_hidden(library):
    (library / "2020" / "no_extension").write_bytes((library / "2019" / "GROUP.JPG").read_bytes())
    found = names(library)
    assert found == [
        "2019/GROUP.JPG", "2019/wedding/astronaut.jpg", "2020/astronaut.png", "2020/landscape.jpeg",
        "2020/no_extension", "bad/empty.jpg", "bad/notes.jpg", "bad/truncated.jpg",
    ]


def test_exclude_globs(library):
    found = names(library, exclude=["*/bad/*", "*.png"])
    assert "bad/empty.jpg" not in found and "2020/astronaut.png" not in found
    assert "2019/GROUP.JPG" in found


def test_symlinks_followed_only_when_asked_and_loops_reported(library, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.jpg").write_bytes((library / "2019" / "GROUP.JPG").read_bytes())
    os.symlink(elsewhere, library / "2020" / "link")
    os.symlink(library, library / "2020" / "loop")
    os.symlink(library / "2019", library / "again")  # a second way into a folder: its files once only
    assert not any("link" in str(n) or "again" in str(n) for n in names(library))
    followed = names(library, follow_symlinks=True)
    assert "2020/link/x.jpg" in followed
    assert followed.count(("ERR", "symlink loop: links back to a folder that contains it")) == 1
    assert sum(str(n).endswith("GROUP.JPG") for n in followed) == 1


def test_unreadable_folder_is_reported_not_fatal(library):
    locked = library / "locked"
    locked.mkdir()
    os.chmod(locked, 0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: make the folder vanish instead
            os.chmod(locked, 0o755)
            os.rmdir(locked)
            results = list(walk([library / "locked"]))
            assert [(type(r), r.reason) for r in results] == [(WalkError, "No such file or directory")]
        else:
            results = list(walk([library]))
            assert any(isinstance(r, WalkError) and "cannot read folder" in r.reason for r in results)
    finally:
        if locked.exists():
            os.chmod(locked, 0o755)


def test_sniff_magic_numbers():
    assert sniff(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff(b"\x89PNG\r\n\x1a\n") == "PNG"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP"
    assert sniff(b"\0\0\0\x18ftypheic") == "HEIF"
    assert sniff(b"hello world") is None
