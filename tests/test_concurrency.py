"""One scan per index, waiting for another, parallel scans of different indexes, and no network."""

import subprocess
import sys
import threading
import time

from typer.testing import CliRunner

from phototag.cli import app
from phototag.index import Index
from phototag.tags import image_data, read_tags

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
    procs = [subprocess.Popen([sys.executable, "-m", "phototag.cli", "scan", str(folder), "--db",
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
