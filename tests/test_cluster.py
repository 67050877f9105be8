"""`scan --ray`: a real local Ray (one per module, started once), real photos, real dlib.

The same library scanned plainly and through Ray gives the same faces, ages and people; bad files are
recorded as in a plain scan; a Ray worker killed mid-scan costs no photo and indexes none twice. A scan
without --ray never imports Ray, and a missing Ray is one Error line naming the extra.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phototag.ages.model import load_model
from phototag.cli import app
from phototag.scan.cluster import RayOptions, require_ray
from phototag.scan.pipeline import ScanOptions, scan
from phototag.store.index import Index

from .conftest import group_photo, save_jpeg, tree_digest
from .people_photos import make_family
from .test_faults import bad_library

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed: the cluster extra (uv sync --extra cluster)")
ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: 2 CPUs and one GPU, started once (about 5 s). The GPU is Ray's
    bookkeeping only: actors that ask for a share of it get one, and run Keras on the CPU."""
    if not HAVE_RAY:
        pytest.skip("Ray is not installed: the cluster extra (uv sync --extra cluster)")
    ray = require_ray()  # as a scan imports it
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def content(db: Path) -> tuple[dict, set]:
    """Faces by (photo, index) with box, age and distribution; people as sets of faces (ids aside)."""
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    faces, people = {}, {}
    for r in con.execute("SELECT f.*, p.path AS photo FROM faces f JOIN photos p ON p.id = f.photo_id"):
        key = (r["photo"], r["idx"])
        faces[key] = r
        people.setdefault(r["person_id"], set()).add(key)
    con.close()
    return faces, {frozenset(v) for v in people.values()}


def photo_rows(db: Path) -> dict[str, tuple]:
    con = sqlite3.connect(db)
    rows = {r[0]: r[1:] for r in con.execute("SELECT path, status, error, face_count FROM photos")}
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    return rows


def family(tmp_path: Path, astronaut) -> Path:
    lib = make_family(tmp_path / "lib", astronaut)
    save_jpeg(lib / "2019" / "group.jpg", group_photo(astronaut, 3))
    return lib


def scan_both_ways(tmp_path: Path, lib: Path, ray: RayOptions) -> None:
    """The family library scanned plainly and through Ray with `ray`: the same faces (boxes), ages
    within 1e-3 years, groups and people."""
    model = load_model()
    for name, options in (("plain", None), ("ray", ray)):
        with Index(tmp_path / f"{name}.db") as ix:
            summary = scan([lib], ix, model, options=ScanOptions(workers=1, ray=options))
        assert summary.exit_code == 0 and summary.tagged == 8 and summary.faces == 11, summary.line()
    (plain, plain_people), (via_ray, ray_people) = content(tmp_path / "plain.db"), content(tmp_path / "ray.db")
    assert plain.keys() == via_ray.keys() and len(plain) == 11
    for key, a in plain.items():
        b = via_ray[key]
        assert (a["top"], a["right"], a["bottom"], a["left"]) == (b["top"], b["right"], b["bottom"], b["left"]), key
        assert abs(a["age_photo"] - b["age_photo"]) <= 1e-3 and abs(a["age"] - b["age"]) <= 1e-3, key
        assert a["age_group"] == b["age_group"]
    assert plain_people == ray_people and len(ray_people) >= 2


@needs_ray
def test_ray_local_gives_a_plain_scans_faces_ages_and_people(tmp_path, astronaut, local_ray):
    lib = family(tmp_path, astronaut)
    before = tree_digest(lib)
    scan_both_ways(tmp_path, lib, RayOptions())
    assert tree_digest(lib) == before  # no writer: no photo touched


HAVE_KERAS = importlib.util.find_spec("keras") is not None and (
    importlib.util.find_spec("tensorflow") is not None or importlib.util.find_spec("jax") is not None)


@needs_ray
@pytest.mark.skipif(not HAVE_KERAS, reason="GPU actors run Keras: the train extra (uv sync --extra train)")
@pytest.mark.slow
def test_gpu_actors_give_a_plain_scans_faces_ages_and_people(tmp_path, astronaut, local_ray):
    """`--ray ADDRESS --device gpu`: actors that each hold a share of a GPU and run the Keras networks
    (here on the CPU, the GPU being Ray's bookkeeping) find LiteRT's faces, ages and people."""
    seen = tmp_path / "actors"
    seen.mkdir()
    scan_both_ways(tmp_path, family(tmp_path, astronaut),
                   RayOptions(device="gpu", gpus_per_actor=0.5, actor=_reporting_actor(seen)))
    reports = {f.read_text() for f in seen.iterdir()}
    assert reports == {"keras keras [0]"}, reports  # each actor: the Keras networks, on its share of GPU 0


def _reporting_actor(folder: Path):
    """A real PhotoActor that writes, once loaded, which face engine and age runtime it runs and the GPUs
    Ray gave it. Defined in a function so that Ray pickles it by value."""
    from phototag import faces
    from phototag.scan.cluster import PhotoActor

    class _Reporting(PhotoActor):
        def __init__(self, *args):
            super().__init__(*args)
            import ray

            (folder / str(os.getpid())).write_text(
                f"{faces.face_engine().name} {self.model.prefer} {sorted(int(g) for g in ray.get_gpu_ids())}")

    return _Reporting


@pytest.mark.parametrize("resources, device, actors", [
    ({"CPU": 16.0, "GPU": 1.0}, "gpu", 8),  # eight actors to a GPU
    ({"CPU": 4.0, "GPU": 2.0}, "gpu", 4),  # and no more than the CPUs
    ({"CPU": 16.0, "GPU": 1.0}, "cpu", 16),  # CPU actors leave the GPUs alone
    ({"CPU": 2.0}, "cpu", 2),
])
def test_the_actor_pool_fits_the_clusters_cpus_and_gpus(resources, device, actors):
    from phototag.scan.cluster import pool_size

    assert pool_size(resources, RayOptions(device=device)) == actors


def test_gpu_actors_on_a_cluster_without_a_gpu_are_one_error():
    from phototag.errors import PhototagError
    from phototag.scan.cluster import pool_size

    with pytest.raises(PhototagError) as err:
        pool_size({"CPU": 16.0}, RayOptions(device="gpu"))
    assert str(err.value) == "--device gpu: the Ray cluster has no GPU; without --device gpu its actors run on the CPUs"


@needs_ray
def test_bad_files_through_ray_are_recorded_as_a_plain_scan_records_them(tmp_path, astronaut, local_ray):
    lib = tmp_path / "lib"
    expect = bad_library(lib, astronaut)
    out = {}
    for name, extra in (("plain", ["--workers", "1"]), ("ray", ["--ray", "local"])):
        r = runner.invoke(app, ["scan", str(lib), "--db", str(tmp_path / f"{name}.db"), "--no-exif", *extra])
        assert r.exit_code == 1, r.output
        out[name] = (sorted(r.stderr.splitlines()), photo_rows(tmp_path / f"{name}.db"))
    assert out["ray"] == out["plain"]
    failed = {p for p, (status, _, _) in out["ray"][1].items() if status == "failed"}
    assert len(failed) == sum(1 for v in expect.values() if v and "tags not written" not in v) == 5


def _photo_actors() -> list[int]:
    """Pids of the processes running phototag's Ray actor (Ray names them ray::...PhotoActor...)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if b"PhotoActor" in cmd:
                pids.append(int(entry.name))
    return pids


class _KillOnce:
    """A progress bar that kills one Ray worker running PhotoActor after the first photo comes back."""

    total = 0

    def __init__(self) -> None:
        self.done, self.killed = 0, None

    def update(self, n: int) -> None:
        self.done += n
        if self.killed is None and self.done >= 1:
            pids = _photo_actors()
            assert pids, "no PhotoActor process found"
            self.killed = pids[0]
            os.kill(self.killed, signal.SIGKILL)

    def refresh(self) -> None:
        pass


@needs_ray
def test_a_ray_worker_killed_mid_scan_costs_no_photo(tmp_path, astronaut, local_ray, reliability, capfd):
    """... and Ray's own notices of it ("(raylet) A worker died...") stay off stdout: the scan reports."""
    lib = tmp_path / "lib"
    for i in range(12):
        save_jpeg(lib / f"p{i:02}.jpg", group_photo(astronaut, 1 + i % 3))
    before = tree_digest(lib)
    bar = _KillOnce()
    with Index(tmp_path / "i.db") as ix:
        summary = scan([lib], ix, load_model(), progress=bar,
                       options=ScanOptions(people=False, ray=RayOptions(photos_per_call=1)))
    assert bar.killed is not None
    assert summary.exit_code == 0 and summary.tagged == 12 and not summary.failures, summary.line()
    rows = photo_rows(tmp_path / "i.db")
    assert len(rows) == 12 and all(status == "ok" for status, _, _ in rows.values())
    assert sum(n for _, _, n in rows.values()) == sum(1 + i % 3 for i in range(12))
    con = sqlite3.connect(tmp_path / "i.db")
    assert con.execute("SELECT count(*) FROM faces").fetchone()[0] == 24  # none twice
    con.close()
    assert tree_digest(lib) == before
    assert "(raylet)" not in capfd.readouterr().out
    reliability("a Ray worker killed (SIGKILL) mid-scan", 1, "its photos done again elsewhere, each indexed once")


def test_a_scan_without_ray_never_imports_it(tmp_path, astronaut):
    save_jpeg(tmp_path / "lib" / "a.jpg", astronaut)
    code = ("import sys; from typer.testing import CliRunner; from phototag.cli import app; "
            f"r = CliRunner().invoke(app, ['scan', {str(tmp_path / 'lib')!r}, '--db', {str(tmp_path / 'i.db')!r}, "
            "'--workers', '1']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ray_missing_is_one_error_line_naming_the_extra(tmp_path, astronaut):
    save_jpeg(tmp_path / "lib" / "a.jpg", astronaut)
    code = ("import sys; sys.modules['ray'] = None; from phototag.cli import run; sys.argv = ['phototag', 'scan', "
            f"{str(tmp_path / 'lib')!r}, '--db', {str(tmp_path / 'i.db')!r}, '--ray', 'local']; run()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr == ("Error: --ray needs Ray Data, which is not installed (ray): uv sync --extra cluster, "
                          "or pip install 'phototag[cluster]'\n")
    assert not (tmp_path / "i.db").exists()


@needs_ray
@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH, as the README's commands do")
def test_ray_local_under_uv_run_from_another_folder(tmp_path, astronaut):
    """`uv run --project DIR phototag scan --ray local` from outside DIR: Ray's own `uv run` propagation
    refused to start ("... is not in the working_dir"); phototag turns it off. --no-sync: the suite's
    environment is used as it is, never re-synced under it."""
    save_jpeg(tmp_path / "lib" / "a.jpg", astronaut)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_UV_RUN_RUNTIME_ENV"}  # as a user's shell has it
    out = subprocess.run(["uv", "run", "--no-sync", "--project", str(ROOT), "python", "-m", "phototag", "scan",
                          str(tmp_path / "lib"), "--db", str(tmp_path / "i.db"), "--no-exif", "-q", "--ray", "local"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    con = sqlite3.connect(tmp_path / "i.db")
    assert con.execute("SELECT count(*) FROM faces").fetchone()[0] == 1
    con.close()


def _waiting_actor(folder: Path):
    """A real PhotoActor that, from its second call on, waits up to 30 s for the scan to have taken a
    result back (folder/'taken', touched by the progress bar), and notes in folder/'late' when it
    waited in vain. Defined in a function so that Ray pickles it by value."""
    import time

    from phototag.scan.cluster import PhotoActor

    class _Waiting(PhotoActor):
        calls = 0

        def __call__(self, batch):
            self.calls += 1
            if self.calls > 1:
                deadline = time.monotonic() + 30
                while not (folder / "taken").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not (folder / "taken").exists():
                    (folder / "late").write_text(f"call {self.calls}")
            return super().__call__(batch)

    return _Waiting


class _TouchOnResult:
    total = 0

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def update(self, n: int) -> None:
        self.marker.touch()

    def refresh(self) -> None:
        pass


@needs_ray
def test_results_come_back_call_by_call(tmp_path, astronaut, local_ray):
    """An actor's first call reaches the scan while the actor works on its second: results stream back
    call by call, so the index commits them as they come and a killed scan loses at most a call per
    actor. (When a dataset block held several calls, the second call waited for itself.)"""
    lib = tmp_path / "lib"
    for i in range(8):
        save_jpeg(lib / f"p{i}.jpg", group_photo(astronaut, 1))
    with Index(tmp_path / "i.db") as ix:
        summary = scan([lib], ix, load_model(), progress=_TouchOnResult(tmp_path / "taken"),
                       options=ScanOptions(people=False, ray=RayOptions(actors=1, photos_per_call=1,
                                                                         actor=_waiting_actor(tmp_path))))
    assert not (tmp_path / "late").exists()
    assert (summary.tagged, summary.faces, summary.failures) == (8, 8, [])


@needs_ray
def test_a_retry_goes_on_while_every_cpu_is_held(tmp_path, astronaut, local_ray):
    """After a failed dataset, the photos left are sent again even when every CPU stays booked, as a
    failed dataset's idle actors book theirs for as long as something (a logging handler keeping Ray
    Data's error records) refers to them: the last actor asks for no CPU rather than wait forever."""
    from phototag.scan.cluster import PhotoActor, _Datasets, _rows

    ray = local_ray
    holder = ray.remote(num_cpus=2)(_Idle).remote()
    assert ray.get(holder.ready.remote()) and ray.available_resources().get("CPU", 0.0) == 0.0
    lib = tmp_path / "lib"
    for i in range(2):
        save_jpeg(lib / f"p{i}.jpg", group_photo(astronaut, 1))
    model = load_model()
    args = ScanOptions().analyse_args(keep_chips=model.input_kind == "chip")
    run = _Datasets(ray, args, str(model.path), 2, RayOptions(), PhotoActor)
    run.failed, run.room_timeout = True, 1.0
    try:
        found = list(run.settle(_rows((p, None) for p in sorted(map(str, lib.iterdir()))), 1))
    finally:
        ray.kill(holder)
    assert sorted((a.path, a.error, len(a.boxes)) for a in found) == [(str(p), None, 1) for p in sorted(lib.iterdir())]


class _Idle:
    def ready(self) -> bool:
        return True


def _crashing_actor():
    """A real PhotoActor whose process dies (os._exit) whenever a call holds poison.jpg, as a decoder
    that crashes on one file would. Defined in a function so that Ray pickles it by value."""
    from phototag.scan.cluster import PhotoActor

    class _Crashing(PhotoActor):
        def __call__(self, batch):
            if any(os.fsdecode(p).endswith("poison.jpg") for p in batch["path"]):
                os._exit(3)
            return super().__call__(batch)

    return _Crashing


@needs_ray
def test_a_photo_that_kills_its_worker_every_time_fails_alone(tmp_path, astronaut, local_ray, reliability):
    lib = tmp_path / "lib"
    for i in range(6):
        save_jpeg(lib / f"p{i}.jpg", group_photo(astronaut, 1))
    save_jpeg(lib / "poison.jpg", group_photo(astronaut, 1))
    with Index(tmp_path / "i.db") as ix:
        summary = scan([lib], ix, load_model(), options=ScanOptions(
            people=False, ray=RayOptions(photos_per_call=2, retries=1, actor=_crashing_actor())))
    assert summary.tagged == 6 and summary.exit_code == 1, summary.line()
    assert [p for p, _ in summary.failures] == [str(lib / "poison.jpg")]
    assert summary.failures[0][1].startswith("lost with the Ray workers that analysed it, scanned again next run (")
    rows = photo_rows(tmp_path / "i.db")
    assert sum(status == "ok" for status, _, _ in rows.values()) == 6
    assert rows[str(lib / "poison.jpg")][0] == "failed"
    reliability("a photo whose Ray worker dies on it every time", 1,
                "recorded as failed (tried again next run), the other photos indexed")
