"""`phototag scan` and `phototag untag`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import PhototagError
from .app import EXIT_CODES, app
from .app import finish as _finish
from .app import report_failure as _report_failure
from .common import DbOption
from .common import db_path as _db
from .common import fatal as _fatal

def _raise_interrupt(signum: int, frame: object) -> None:
    from ..scan.pipeline import Interrupted

    raise Interrupted(signal.Signals(signum).name)


@app.command(epilog=EXIT_CODES)
def scan(
    paths: List[Path] = typer.Argument(..., help="Photos and folders to scan (folders recursively)."),
    db: Optional[Path] = DbOption,
    model: Optional[Path] = typer.Option(None, help="Model to use (models/NAME). Default: the shipped model."),
    scheme: str = typer.Option("ten", help="Age-group scheme: ten, three, four, adience, or a .toml file."),
    detector: str = typer.Option("auto", help="Face detector: auto (dlib's CNN on a detection copy of up to 1.6 "
                                              "megapixels; on a larger one, the CNN at 0.5 megapixel and HOG), hog "
                                              "(fastest; misses faces in profile) or cnn (the CNN on the whole "
                                              "detection copy; slowest)."),
    upsample: Optional[int] = typer.Option(None, min=0, max=3, show_default="once for small photos, else 0",
                                           help="Times to upsample before detecting (finds smaller faces, slower)."),
    detect_size: int = typer.Option(2000, min=200, help="Faces are detected in a copy with the pixels of a 4:3 photo this long (panoramas keep more length)."),
    thorough: bool = typer.Option(False, help="Find faces down to 80 px in 12 MP photos: --detect-size 2400 "
                                              "--upsample 1; scans about 3 times slower."),
    min_face: int = typer.Option(40, min=1, help="Ignore faces smaller than this, in full-resolution pixels."),
    min_score: float = typer.Option(0.0, help="Ignore HOG detections scoring below this."),
    verify: bool = typer.Option(True, help="Confirm doubtful HOG faces (score under 0.5) with dlib's CNN detector."),
    workers: int = typer.Option(0, min=0, help="Detection processes (0: one per core); with --ray, actors (0: one "
                                               "per CPU of the cluster)."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS",
                                      help="Analyse the photos on a Ray cluster: local (start one on this machine), "
                                           "auto (the cluster this machine has joined) or its address "
                                           "(ray://head:10001). Needs the cluster extra; see docs/cluster.md."),
    device: str = typer.Option("auto", help="Where the networks run: cpu (LiteRT), gpu (Keras on JAX or TensorFlow; "
                                            "slower than the CPU for now, see docs/cluster.md) or auto (the CPU, "
                                            "until a GPU scan is the faster). With --ray: the actors' (gpu: eight "
                                            "actors to a GPU)."),
    batch_size: int = typer.Option(64, min=1, help="Faces per model batch, gathered across photos."),
    exclude: List[str] = typer.Option([], help="Skip paths matching this glob (repeatable)."),
    follow_symlinks: bool = typer.Option(False, help="Follow symbolic links to files and folders."),
    force: bool = typer.Option(False, help="Redo every photo, even unchanged ones."),
    no_exif: bool = typer.Option(False, "--no-exif", help="Never write tags into photos (index, and sidecars with --sidecar)."),
    sidecar: bool = typer.Option(False, help="Also write XMP sidecars (keywords and face regions); the only "
                                               "tags PNG and HEIC photos get."),
    sidecar_style: str = typer.Option("append", help="Sidecar names: append (IMG_0042.jpg.xmp: darktable, "
                                                      "digiKam) or replace (IMG_0042.xmp: Lightroom)."),
    dry_run: bool = typer.Option(False, help="Write nothing at all: no photo, no index."),
    prune: bool = typer.Option(False, help="Delete index rows of photos that have disappeared (default: mark missing)."),
    people: bool = typer.Option(True, help="Group faces into people, estimate their birth dates, and give "
                                           "each face the age its person implies (see phototag people)."),
    wait: float = typer.Option(0.0, min=0, help="Seconds to wait for another scan of the same index to finish."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
) -> None:
    """Find faces, estimate ages, write EXIF tags and index every photo under PATHS."""
    from ..store.index import Index
    from ..ages.model import load_model
    from ..scan.pipeline import ScanOptions, scan as run_scan

    try:
        if thorough:
            detect_size = max(detect_size, ScanOptions.THOROUGH["detect_size"])
            upsample = ScanOptions.THOROUGH["upsample"] if upsample is None else upsample
        runtime = _runtime(device, ray is not None)
        options = ScanOptions(detector=detector, upsample=upsample, detect_size=detect_size, min_face=min_face,
                              min_score=min_score, verify=verify,
                              workers=workers, batch_size=batch_size, force=force, exclude=tuple(exclude),
                              follow_symlinks=follow_symlinks, scheme=scheme, prune=prune, people=people,
                              ray=_ray_options(ray, workers, device), runtime=runtime)
        from ..ages.groups import get_scheme

        get_scheme(scheme)
        age_model = load_model(model, runtime="keras" if options.runtime == "keras" else "auto")
        writer = _writer(dry_run=dry_run, exif=not no_exif, sidecar=sidecar, sidecar_style=sidecar_style)
        index = Index(_db(db), in_memory=dry_run)
    except PhototagError as exc:
        raise _fatal(exc) from None
    with index:
        try:
            if not dry_run:
                index.lock(wait)
        except PhototagError as exc:
            raise _fatal(exc) from None
        old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM,)}
        from tqdm import tqdm

        bar = tqdm(total=0, unit="photo", disable=quiet or not sys.stderr.isatty(), file=sys.stderr)
        try:
            summary = run_scan(paths, index, age_model, writer=writer, options=options,
                               on_failure=_report_failure, progress=bar)
        except PhototagError as exc:
            raise _fatal(exc) from None
        finally:
            bar.close()
            for s, h in old.items():
                signal.signal(s, h)
    _finish(summary, dry_run=dry_run, quiet=quiet)


def _runtime(device: str, on_ray: bool) -> str:
    """--device as the runtime of this machine's networks. With --ray they run on the actors
    (`_ray_options`), and this machine only checks the name."""
    from ..runtime import DEVICES, runtime_for_device

    return "litert" if on_ray and device in DEVICES else runtime_for_device(device)  # an unknown name: its Error


def _ray_options(address: Optional[str], workers: int, device: str = "auto"):
    """--ray's options, after checking that Ray is installed (one Error line naming the extra if not).
    `--device gpu` asks for GPU actors; with `--ray local` this machine must have the GPU, as without Ray.
    auto stays on the CPUs, as without Ray."""
    if address is None:
        return None
    from ..runtime import runtime_for_device
    from ..scan.cluster import RayOptions, require_ray

    if not address.strip():
        raise PhototagError("--ray needs an address: local, auto, or the cluster's (ray://head:10001)")
    require_ray()
    if device == "gpu" and address.strip() == "local":
        runtime_for_device(device)  # the same Error line as without Ray when this machine has no GPU
    return RayOptions(address=address.strip(), actors=workers, device="gpu" if device == "gpu" else "cpu")


def _writer(*, dry_run: bool, exif: bool, sidecar: bool, sidecar_style: str):
    """The writer the options ask for: nothing (dry run), EXIF, sidecars, or both."""
    from ..tags.sidecar import STYLES, SidecarWriter
    from ..tags.exif import ExifWriter, MultiWriter, NullWriter

    if sidecar_style not in STYLES:
        raise PhototagError(f"unknown sidecar style {sidecar_style!r}: use append or replace")
    if dry_run:
        return NullWriter("dry run")
    writers = ([ExifWriter()] if exif else []) + ([SidecarWriter(sidecar_style)] if sidecar else [])
    if not writers:
        return NullWriter("--no-exif", tidy=True)
    return writers[0] if len(writers) == 1 else MultiWriter(*writers)


@app.command(epilog=EXIT_CODES)
def untag(
    paths: List[Path] = typer.Argument(..., help="Photos and folders to untag (folders recursively)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Also note the change in this index (default: "
                                      "$PHOTOTAG_DB or the user data folder's index, when it exists).",
                                      show_default=False),
    exclude: List[str] = typer.Option([], help="Skip paths matching this glob (repeatable)."),
    follow_symlinks: bool = typer.Option(False, help="Follow symbolic links to files and folders."),
    dry_run: bool = typer.Option(False, help="Write nothing at all."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
) -> None:
    """Remove exactly what phototag wrote: its keywords and UserComment record in the photos, and its
    entries in their XMP sidecars (a sidecar left with nothing else in it is deleted)."""
    from ..store.index import Index
    from ..scan.untag import untag as run_untag
    from ..tags.sidecar import STYLES, SidecarWriter
    from ..tags.exif import ExifWriter, MultiWriter, NullWriter

    db_path = _db(db)
    try:
        index = Index(db_path) if db_path.exists() and not dry_run else None
        if index is not None:
            index.lock()
    except PhototagError as exc:
        raise _fatal(exc) from None
    try:
        writer = NullWriter("dry run") if dry_run else MultiWriter(ExifWriter(), *(SidecarWriter(s) for s in STYLES))
        summary = run_untag(paths, writer, index=index,
                            exclude=exclude, follow_symlinks=follow_symlinks, on_failure=_report_failure)
    finally:
        if index is not None:
            index.close()
    _finish(summary, dry_run=dry_run, quiet=quiet)


# The filters `query`, `export` and `contact-sheet` share.
