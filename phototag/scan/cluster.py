"""A scan's analysis on a Ray cluster (`scan --ray`): Ray Data streams photo paths to actors that
decode, detect, align, describe and age each photo, and streams the small results back.

The driver keeps what must stay on one machine: the walk and its triage, the index, people and the
tags (pipeline.py). Only paths go out and only boxes, descriptors and age distributions come back,
never decoded pixels. The paths are sent in windows (one dataset each) so that the walk and the
analysis overlap without the whole library being listed first; each result is committed as it
arrives, so the index stays the checkpoint a killed scan resumes from.

Ray is imported only here, and only when a scan asks for it.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
import warnings
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generator, Iterable, Iterator

import numpy as np

from .. import faces
from ..ages.model import AgeModel, load_model
from ..errors import DependencyError, PhototagError
from ..runtime import native_stderr_silenced
from .analyse import Analysis, age_faces, analyse, known_boxes, prepare_process

__all__ = ["RayOptions", "require_ray", "ray_analyses", "PhotoActor", "pool_size", "WORKER_LOST", "GPU_WITH_RAY"]

EXTRA = "uv sync --extra cluster, or pip install 'phototag[cluster]'"
WORKER_LOST = "lost with the Ray workers that analysed it, scanned again next run"
GPU_WITH_RAY = ("with Ray the networks run on the actors, not on this machine: ask for GPU actors with "
                "RayOptions(device='gpu') (scan --ray ADDRESS --device gpu)")
DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: `address` is 'local' (a Ray started here for this scan), 'auto' (the cluster
    this machine has joined) or a Ray address (ray://head:10001)."""

    address: str = "local"
    actors: int = 0  # 0: one per CPU the cluster has (cpus_per_actor each), and on GPUs as many as they hold
    cpus_per_actor: float = 1.0
    device: str = "cpu"  # cpu: LiteRT actors; gpu: Keras actors, gpus_per_actor of a GPU each
    gpus_per_actor: float = 0.125  # eight actors share a GPU: the most a whole GPU scan gained from (docs/cluster.md)
    photos_per_call: int = 4  # photos an actor takes at a time: small, so a dead actor loses little
    window: int = 0  # photos per dataset; 0: 250 per actor, at least 1,000
    retries: int = 3  # times a call is retried on a restarted actor before its dataset fails
    actor: type | None = None  # the class each actor runs; None: PhotoActor (a test's subclass injects faults)


def require_ray() -> Any:
    """Ray, or one error naming the extra that installs it.

    Ray's `uv run` propagation is off unless the user turns it on (RAY_ENABLE_UV_RUN_RUNTIME_ENV=1):
    under `uv run` Ray would start every worker through `uv run` in a copy of the current folder, and
    refuses to start at all when the project is not in that folder (`uv run --project DIR phototag`
    run from elsewhere). Every node runs the phototag installed on it (docs/cluster.md). Ray reads
    the variable when it is first imported."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise DependencyError(f"--ray needs Ray Data, which is not installed ({exc.name or exc}): {EXTRA}") from exc
    return ray


class PhotoActor:
    """One Ray actor: loads dlib, the face engine and the age model once, then analyses batches of
    photos and predicts their faces' ages together. A photo that raises is its own failure record.
    On a GPU (`device` 'gpu') the networks are the Keras ones, which Ray's share of a GPU runs."""

    def __init__(self, analyse_args: tuple, model_path: str, device: str = "cpu") -> None:
        # Small arguments only: Ray restarts a dead actor from them, and cannot once they are gone.
        prepare_process("keras" if device == "gpu" else None)
        self.args = analyse_args
        # the same path on every node (docs/cluster.md)
        self.model = load_model(model_path, runtime="keras" if device == "gpu" else "auto")
        faces.face_engine()
        self.model.warm()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        found = [analyse(os.fsdecode(p), *self.args, **known_boxes(pickle.loads(k)))
                 for p, k in zip(batch["path"], batch["known"])]
        try:
            age_faces(self.model, found)
        except Exception as exc:  # noqa: BLE001 - the batch's photos with faces fail, the scan goes on
            for a in found:
                a.chips = None
                if a.error is None and a.boxes:
                    a.error = f"unexpected error in the age model: {type(exc).__name__}: {exc}"
                elif a.error is None:
                    a.distribution = np.zeros((0, 101), np.float32)
        out = np.empty(len(found), dtype=object)
        out[:] = [pickle.dumps(a, protocol=5) for a in found]
        return {"result": out}


def _connect(ray: Any, address: str) -> bool:
    """Join or start Ray; True when this scan started it (and so stops it)."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}
    try:
        with native_stderr_silenced():  # its C++ core announces its log level on stderr
            if address == "local":
                ray.init(address="local", num_cpus=os.cpu_count() or 1, **quiet)  # new, even where one runs
            else:
                ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        raise PhototagError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc
    return True


def _quiet_logs() -> None:
    """Ray's start-up notices (token authentication, deprecations, its C++ core's warnings) are not the
    user's business: cron mails stderr. RAY_BACKEND_LOG_LEVEL set by the user wins."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _WithoutRayNotices:
    """sys.stdout, less what Ray's driver prints from its error-listening thread: "(raylet) A worker
    died...", "Task ... will be retried". Ray prints them on stdout whatever log_to_driver says (no
    switch turns them off), and the scan itself reports what they are about: a photo retried
    elsewhere, or one line for a photo lost with its workers. Other threads write through."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def write(self, text: str) -> int:
        if threading.current_thread().name == "ray_listen_error_messages":
            return len(text)
        return self.out.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.out, name)


def _quiet_data(ray: Any) -> None:
    """No Ray Data progress bars or plan logs: the scan's own bar and summary are what a user sees."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.verbose_progress = False
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False


def pool_size(resources: dict[str, float], options: RayOptions) -> int:
    """Actors for a cluster with these resources (Ray's `cluster_resources()`): every CPU busy, none
    waiting, and on GPUs no more than they hold. PhototagError when GPU actors are asked of a cluster
    without a GPU."""
    if options.device == "gpu" and resources.get("GPU", 0.0) < options.gpus_per_actor:
        raise PhototagError("--device gpu: the Ray cluster has no GPU; without --device gpu its actors run on "
                            "the CPUs")
    if options.actors:
        return options.actors
    return max(1, _actors_fitting({"CPU": 1.0, **resources}, options))


def _actors_fitting(resources: dict[str, float], options: RayOptions) -> int:
    """How many actors these CPUs (and, for GPU actors, GPUs) hold."""
    actors = int(float(resources.get("CPU", 0.0)) // options.cpus_per_actor)
    if options.device == "gpu":
        actors = min(actors, int(float(resources.get("GPU", 0.0)) / options.gpus_per_actor + 1e-9))
    return actors


def ray_analyses(tasks: Iterable[tuple[str, list[faces.Box] | None]], analyse_args: tuple, model: AgeModel,
                 options: RayOptions) -> Iterator[Analysis]:
    """Each task's Analysis, ages included, in the order they finish, each path once."""
    ray = require_ray()
    tasks = iter(tasks)
    first = list(islice(tasks, 1))
    if not first:
        return  # nothing to analyse: Ray is not even started
    _quiet_logs()
    notices = sys.stdout = _WithoutRayNotices(sys.stdout)
    owned = False
    try:
        owned = _connect(ray, options.address)
        _quiet_data(ray)
        actors = pool_size(ray.cluster_resources(), options)
        window = options.window or max(1000, 250 * actors)
        pending = first + list(islice(tasks, window - 1))
        while pending:
            yield from _window(ray, pending, analyse_args, str(model.path), actors, options,
                               options.actor or PhotoActor)
            pending = list(islice(tasks, window))
    finally:
        if owned:
            ray.shutdown()
        if sys.stdout is notices:
            sys.stdout = notices.out


def _window(ray: Any, tasks: list, analyse_args: tuple, model_path: str, actors: int,
            options: RayOptions, actor: type) -> Iterator[Analysis]:
    """One window of photos, each brought back once (a retried call may bring one back twice)."""
    run = _Datasets(ray, analyse_args, model_path, actors, options, actor)
    yield from run.settle(_rows(tasks), options.photos_per_call)


def _rows(tasks: Iterable[tuple[str, list[faces.Box] | None]]) -> list[dict[str, bytes]]:
    """Ray Data's rows for these photos: each path, and the boxes already known in it (pickled).
    Paths travel as bytes: a name that is not UTF-8 (a Latin-1 folder from an old camera) stays whole."""
    return [{"path": os.fsencode(p), "known": pickle.dumps(k)} for p, k in tasks]


class _Datasets:
    """Photos through Ray Data until each has come back or is known to kill its worker.

    A dead actor is restarted and its calls retried (on another node if its node is gone), up to
    `options.retries` times. If the dataset fails all the same (a photo that kills its worker every
    time), what did not come back is sent again, one photo per call: whole while each dataset brings
    some photo back, else in halves, so that the photo that kills its workers ends up alone and is
    recorded as failed (scanned again next run), and no other photo with it."""

    def __init__(self, ray: Any, analyse_args: tuple, model_path: str, actors: int, options: RayOptions,
                 actor: type) -> None:
        self.ray, self.args, self.model_path, self.actors, self.opt, self.actor = \
            ray, analyse_args, model_path, actors, options, actor
        self.returned: set[str] = set()
        self.failed = False  # a dataset of this window has failed: every later one runs without restarts

    def settle(self, rows: list[dict], per_call: int) -> Iterator[Analysis]:
        before = len(self.returned)
        error = yield from self._attempt(rows, per_call, first=not self.failed)
        if error is None:
            return
        rest = [row for row in rows if os.fsdecode(row["path"]) not in self.returned]
        self.failed = True
        if not rest:
            return
        if len(self.returned) > before:
            yield from self.settle(rest, 1)
        elif len(rest) == 1:
            yield Analysis(os.fsdecode(rest[0]["path"]), error=f"{WORKER_LOST} ({error})")
        else:
            half = len(rest) // 2
            yield from self.settle(rest[:half], 1)
            yield from self.settle(rest[half:], 1)

    def _attempt(self, rows: list[dict], per_call: int, first: bool) -> Generator[Analysis, None, str | None]:
        """One dataset: yields what comes back; returns why it stopped, if it failed.

        The first dataset of a window restarts a dead actor (on another node if its node is gone) and
        retries its calls. Later ones, after a failure, leave a dead actor dead: restarted, an actor
        that a photo kills every time would hold its CPU for good. A failed dataset's actors may
        keep their CPUs a while, or for good, so a later pool takes the CPUs that are free (`_room`)."""
        ray = self.ray
        size, share = (min(self.actors, len(rows)), 1.0) if first else self._room(min(self.actors, len(rows)))
        fault = {"max_task_retries": self.opt.retries} if first else {"max_restarts": 0}
        # A block per call: an actor's results come back call by call, so the index commits them as
        # they come and a killed scan loses at most a call per actor (blocks of 25 photos came back
        # whole, 18 s apart on 2 cores; the same total time).
        ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // per_call)))
        with warnings.catch_warnings():  # these have no named parameters yet
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            gpus = {"num_gpus": self.opt.gpus_per_actor * share} if self.opt.device == "gpu" else {}
            ds = ds.map_batches(self.actor, fn_constructor_args=(self.args, self.model_path, self.opt.device),
                                batch_size=per_call, num_cpus=self.opt.cpus_per_actor * share,
                                compute=ray.data.ActorPoolStrategy(size=size), batch_format="numpy", **gpus, **fault)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
                for blob in batch["result"]:
                    a: Analysis = pickle.loads(blob)
                    if a.path not in self.returned:
                        self.returned.add(a.path)
                        yield a
        except Exception as exc:  # noqa: BLE001 - Ray's failures have many types; the photos matter
            # Only its text is kept: the exception's frames hold the failed dataset, whose actors
            # keep their CPUs for as long as anything refers to them.
            text = str(exc).strip().splitlines()
            return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
        return None

    room_timeout = 10.0  # seconds a later dataset waits for a failed one's CPUs

    def _room(self, wanted: int) -> tuple[int, float]:
        """Actors to start, and the share of an actor's CPUs (and GPUs) each asks for: `wanted` once
        the CPUs of a failed dataset's actors are free again (up to `room_timeout`); else as many as
        the free CPUs allow; else one that asks for none.

        Ray lets a failed dataset's actors go only when nothing refers to them, and something may
        hold on for good: a logging handler that keeps Ray Data's error records keeps their
        tracebacks, and with them the actors (pytest's does). Waiting for those CPUs could be
        forever; idle, those actors use none, so the last actor asks for none."""
        import gc
        import time

        gc.collect()
        deadline = time.monotonic() + self.room_timeout
        while True:
            free = _actors_fitting(self.ray.available_resources(), self.opt)
            if free >= wanted:
                return wanted, 1.0
            if time.monotonic() > deadline:
                return (free, 1.0) if free else (1, 0.0)
            time.sleep(0.25)
