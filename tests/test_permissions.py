"""Unreadable files and folders, as a user's cron job meets them: named, recorded, retried, never lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import exif_bytes, save_jpeg, tree_digest, unprivileged


def scan(*args, preexec):
    cmd = [sys.executable, "-m", "phototag", "scan", *map(str, args), "--workers", "1", "-q"]
    return subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec, timeout=300)


def rows(db: Path) -> dict[str, tuple]:
    con = sqlite3.connect(db)
    out = {Path(p).name: (s, e) for p, s, e in con.execute("SELECT path, status, error FROM photos")}
    con.close()
    return out


def test_unreadable_file_and_folder(tmp_path, astronaut, reliability):
    try:
        preexec = unprivileged()
    except OSError as exc:  # a container without CAP_SETPCAP cannot drop root's override
        pytest.skip(f"cannot run without root's read override here: {exc}")
    lib = tmp_path / "lib"
    save_jpeg(lib / "open.jpg", astronaut, exif_bytes())
    locked = save_jpeg(lib / "locked.jpg", astronaut, exif_bytes())
    closed = lib / "closed"
    save_jpeg(closed / "inside.jpg", astronaut, exif_bytes())
    db = tmp_path / "i.db"
    os.chmod(locked, 0)
    os.chmod(closed, 0)
    try:
        before = tree_digest(lib)  # as root: what the scan must not change
        r = scan(lib, "--db", db, preexec=preexec)
        assert r.returncode == 1, r.stderr
        assert r.stderr.splitlines() == [
            f"phototag: {closed}: cannot read folder: Permission denied",
            f"phototag: {locked}: cannot read: Permission denied",
            r.stderr.splitlines()[-1],  # the summary, on stderr under -q when something failed
        ]
        assert "2 files seen, 0 skipped, 1 tagged, 1 faces, 2 failed" in r.stderr
        got = rows(db)
        assert got["open.jpg"][0] == "ok"
        assert got["locked.jpg"] == ("failed", "cannot read: Permission denied")
        assert got["closed"] == ("failed", "cannot read folder: Permission denied")
        assert {k: v for k, v in tree_digest(lib).items() if k != "open.jpg"} == \
            {k: v for k, v in before.items() if k != "open.jpg"}

        # Permissions mended: both are tried again (chmod leaves size and mtime as they were).
        os.chmod(locked, 0o644)
        os.chmod(closed, 0o755)
        r = scan(lib, "--db", db, preexec=preexec)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        got = rows(db)
        assert got["locked.jpg"][0] == got["inside.jpg"][0] == "ok" and "closed" not in got

        # Closed again, scanned with --prune: the photo behind it is not 'missing', its row survives.
        os.chmod(closed, 0)
        r = scan(lib, "--db", db, "--prune", preexec=preexec)
        assert r.returncode == 1
        assert r.stderr.startswith(f"phototag: {closed}: cannot read folder: Permission denied\n")
        assert r.stderr.count("\n") == 2
        assert rows(db)["inside.jpg"][0] == "ok"
    finally:
        os.chmod(closed, 0o755)
        os.chmod(locked, 0o644)
    reliability("an unreadable file (mode 000, run without root's override)", 2,
                "named, recorded as failed, photo untouched; retried once readable")
    reliability("an unreadable folder (mode 000, run without root's override)", 3,
                "named, recorded; its photos' rows kept even with --prune; retried once readable")
