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
import warnings
from dataclasses import dataclass
from itertools import islice
from typing import Any, Iterable, Iterator

import numpy as np

from .. import faces
from ..ages.model import AgeModel, load_model
from ..errors import DependencyError, PhototagError
from ..runtime import native_stderr_silenced
from .analyse import Analysis, analyse, known_boxes

__all__ = ["RayOptions", "require_ray", "ray_analyses", "PhotoActor", "WORKER_LOST"]

EXTRA = "uv sync --extra cluster, or pip install 'phototag[cluster]'"
RETRIES = 3  # calls retried on a restarted actor before the dataset gives up
ATTEMPTS = 2  # datasets per window: the second sends one photo per call
WORKER_LOST = "lost with the Ray workers that analysed it, scanned again next run"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: `address` is 'local' (a Ray started here for this scan), 'auto' (the cluster
    this machine has joined) or a Ray address (ray://head:10001)."""

    address: str = "local"
    actors: int = 0  # 0: one per CPU the cluster has (cpus_per_actor each)
    cpus_per_actor: float = 1.0
    photos_per_call: int = 4  # photos an actor takes at a time: small, so a dead actor loses little
    window: int = 0  # photos per dataset; 0: 250 per actor, at least 1,000


def require_ray() -> Any:
    """Ray, or one error naming the extra that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise DependencyError(f"--ray needs Ray Data, which is not installed ({exc.name or exc}): {EXTRA}") from exc
    return ray


class PhotoActor:
    """One Ray actor: loads dlib, the face engine and the age model once, then analyses batches of
    photos and predicts their faces' ages together. A photo that raises is its own failure record."""

    def __init__(self, analyse_args: tuple, model_path: str) -> None:
        # Small arguments only: Ray restarts a dead actor from them, and cannot once they are gone.
        os.environ.setdefault("PHOTOTAG_ENGINE_THREADS", "1")  # one engine thread per actor CPU
        self.args = analyse_args
        self.model = load_model(model_path)  # the same path on every node (docs/cluster.md)
        faces.face_engine()
        self.model.warm()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        found = [analyse(os.fsdecode(p), *self.args, **known_boxes(pickle.loads(k)))
                 for p, k in zip(batch["path"], batch["known"])]
        self._ages(found)
        out = np.empty(len(found), dtype=object)
        out[:] = [pickle.dumps(a, protocol=5) for a in found]
        return {"result": out}

    def _ages(self, found: list[Analysis]) -> None:
        """Every face of the batch through the age model at once; chips are dropped before the trip back."""
        ok = [a for a in found if a.error is None and a.boxes]
        try:
            if self.model.input_kind == "chip":
                x = [a.chips for a in ok if a.chips is not None]
                pred = self.model.predict_chips(np.concatenate(x)) if x else None
            else:
                x = [a.descriptors for a in ok if a.descriptors is not None]
                pred = self.model.predict_descriptors(np.concatenate(x)) if x else None
        except Exception as exc:  # noqa: BLE001 - the batch's photos fail, the scan goes on
            for a in ok:
                a.error = f"unexpected error in the age model: {type(exc).__name__}: {exc}"
            pred = None
        at = 0
        for a in found:
            a.chips = None
            if a.error is None:
                n = len(a.boxes)
                a.distribution = pred.distribution[at:at + n] if n else np.zeros((0, 101), np.float32)
                a.female = None if pred is None or pred.female is None or not n else pred.female[at:at + n]
                at += n


def _connect(ray: Any, address: str) -> bool:
    """Join or start Ray; True when this scan started it (and so stops it)."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}
    try:
        with native_stderr_silenced():  # its C++ core announces its log level on stderr
            if address == "local":
                ray.init(num_cpus=os.cpu_count() or 1, **quiet)
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


def _quiet_data(ray: Any) -> None:
    """No Ray Data progress bars or plan logs: the scan's own bar and summary are what a user sees."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.verbose_progress = False
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False


def pool_size(ray: Any, options: RayOptions) -> int:
    """Actors for the cluster as it is now: every CPU busy, none waiting."""
    if options.actors:
        return options.actors
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(1, int(cpus // options.cpus_per_actor))


def ray_analyses(tasks: Iterable[tuple[str, list[faces.Box] | None]], analyse_args: tuple, model: AgeModel,
                 options: RayOptions) -> Iterator[Analysis]:
    """Each task's Analysis, ages included, in the order they finish, each path once."""
    ray = require_ray()
    tasks = iter(tasks)
    first = list(islice(tasks, 1))
    if not first:
        return  # nothing to analyse: Ray is not even started
    _quiet_logs()
    owned = _connect(ray, options.address)
    try:
        _quiet_data(ray)
        actors = pool_size(ray, options)
        window = options.window or max(1000, 250 * actors)
        pending = first + list(islice(tasks, window - 1))
        while pending:
            yield from _window(ray, pending, analyse_args, str(model.path), actors, options)
            pending = list(islice(tasks, window))
    finally:
        if owned:
            ray.shutdown()


def _window(ray: Any, tasks: list, analyse_args: tuple, model_path: str, actors: int,
            options: RayOptions) -> Iterator[Analysis]:
    """One dataset of photos. A dead actor is restarted and its call retried (on another node if its
    node is gone), up to RETRIES times; if the dataset fails all the same, what did not come back is
    sent again, one photo per call, and then recorded as failed (scanned again next run)."""
    returned: set[str] = set()
    # Paths travel as bytes: a name that is not UTF-8 (a Latin-1 folder from an old camera) stays whole.
    todo = [{"path": os.fsencode(p), "known": pickle.dumps(k)} for p, k in tasks]
    error: Exception | None = None
    for attempt in range(ATTEMPTS):
        ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo), actors * 4)))
        with warnings.catch_warnings():  # max_task_retries has no named parameter yet
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ds.map_batches(PhotoActor, fn_constructor_args=(analyse_args, model_path),
                                batch_size=options.photos_per_call if attempt == 0 else 1,
                                num_cpus=options.cpus_per_actor, max_task_retries=RETRIES,
                                compute=ray.data.ActorPoolStrategy(size=min(actors, len(todo))),
                                batch_format="numpy")
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
                for blob in batch["result"]:
                    a: Analysis = pickle.loads(blob)
                    if a.path not in returned:  # a retried call may bring a photo back twice
                        returned.add(a.path)
                        yield a
            return
        except Exception as exc:  # noqa: BLE001 - Ray's failures have many types; the photos matter
            error = exc
            todo = [row for row in todo if os.fsdecode(row["path"]) not in returned]
    reason = str(error).strip().splitlines()[0][:200] if error is not None else ""
    for row in todo:
        yield Analysis(os.fsdecode(row["path"]), error=f"{WORKER_LOST} ({type(error).__name__}: {reason})")
