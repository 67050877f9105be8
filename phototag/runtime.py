"""What the face engine and the age model both run on: the models folder, the LiteRT runner, Keras,
dlib through face_recognition, checksums, and a quiet native stderr.

The lowest layer of phototag after `errors`: it imports nothing of phototag's but errors, so both
`faces` and `ages` can stand on it without reaching into each other. Nothing heavy runs at import.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import DependencyError, PhototagError

__all__ = ["MODELS_DIR", "Runner", "import_keras", "native_stderr_silenced", "file_sha256",
           "face_recognition_api", "load_dlib", "dlib_model_file", "find_gpu", "runtime_for_device", "DEVICES",
           "engine_threads", "pad_batch", "ready_for_inference", "share_gpu_memory"]

DEVICES = ("auto", "cpu", "gpu")


def _models_dir() -> Path:
    """`models/` of a source checkout, else the copy packed into the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "models", here / "_models"):
        if any(candidate.glob("*.json")):
            return candidate
    return here.parent / "models"


MODELS_DIR = _models_dir()


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send the process's native stderr (fd 2) to /dev/null for a moment.

    TensorFlow and LiteRT print start-up lines from C++ before any log level applies; cron mails
    stderr, so those lines must not reach it. Python's own errors still do, after the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras() -> Any:
    """Import Keras on TensorFlow (unless KERAS_BACKEND says otherwise) without TensorFlow's start-up noise."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return sys.modules["keras"]
    try:
        with native_stderr_silenced():
            import keras
    except ImportError as exc:
        raise DependencyError(f"cannot load Keras/TensorFlow ({exc}): training, conversion and the Keras "
                              "runtime need the train extra (uv sync --extra train)") from exc
    return keras


def engine_threads() -> int:
    """Threads a network may use: PHOTOTAG_ENGINE_THREADS (a scan's worker or Ray actor sets 1), else
    every core."""
    return int(os.environ.get("PHOTOTAG_ENGINE_THREADS") or 0) or os.cpu_count() or 1


def pad_batch(x: np.ndarray, cap: int) -> np.ndarray:
    """`x` with zero rows added, up to a power of two (at most `cap`) or a multiple of `cap`.

    Under JAX a network compiles once per input shape (seconds on a GPU, in every process); batches of
    a few sizes compile a few times, not once per count of faces. Callers keep the first len(x) rows."""
    n = len(x)
    if n <= cap:
        size = min(1 << max(0, (n - 1).bit_length()), cap)
    else:
        size = -(-n // cap) * cap
    if size == n:
        return x
    return np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])


def share_gpu_memory() -> None:
    """For a process that shares its GPU with others (scan workers, Ray actors): take memory as it is
    needed, where JAX would take 75 % of the GPU at start and TensorFlow all of it. Call it before
    Keras is imported; what the user set wins."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


def ready_for_inference(keras: Any) -> None:
    """Keras on JAX as phototag's networks need it; nothing under another backend.

    - Full float32 precision: JAX's default uses TF32 on a GPU, which moved dlib's descriptors by up
      to 8.5e-4 on an H200 (1.3e-6 at full precision) and would move the ages.
    - Compiles kept in phototag's cache folder: a scan's workers share one compile of each shape, and
      the next scan compiles nothing."""
    if keras.backend.backend() == "jax":
        _jax_for_inference()


@functools.lru_cache(maxsize=1)
def _jax_for_inference() -> None:
    import jax
    import platformdirs

    jax.config.update("jax_default_matmul_precision", "highest")
    jax.config.update("jax_compilation_cache_dir", str(Path(platformdirs.user_cache_dir("phototag")) / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def file_sha256(path: Path) -> str:
    """The checksum model cards name their files by."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Runner:
    """One LiteRT interpreter: resized whenever the input's shape changes (a batch size, a pyramid
    band), the input cast to the model's dtype, every output copied out. The age models and the face
    engine both run through it."""

    def __init__(self, interp: Any, dtype: str = "float32") -> None:
        self.interp, self.dtype, self.shape = interp, np.dtype(dtype), None
        self.input = interp.get_input_details()[0]["index"]  # looked up once, not on every call
        self.outputs = interp.get_output_details()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if x.shape != self.shape:
            with native_stderr_silenced():
                self.interp.resize_tensor_input(self.input, list(x.shape))
                self.interp.allocate_tensors()
            self.shape = x.shape
        self.interp.set_tensor(self.input, np.ascontiguousarray(x, dtype=self.dtype))
        self.interp.invoke()
        return [self.interp.get_tensor(o["index"]).copy() for o in self.outputs]


@functools.lru_cache(maxsize=1)
def face_recognition_api() -> Any:
    """Import face_recognition once, turning its quiet `quit()` on a broken install into an error."""
    if importlib.util.find_spec("face_recognition_models") is None:
        raise DependencyError("face_recognition_models is not installed (pip install face-recognition-models)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pkg_resources  # noqa: F401  face_recognition_models needs it
        except ImportError as exc:
            raise DependencyError("face_recognition_models needs pkg_resources: install setuptools<82") from exc
        try:
            import face_recognition.api as api
        except (ImportError, SystemExit) as exc:
            raise DependencyError(f"cannot load face_recognition/dlib: {exc}") from exc
    # face_recognition turns on Pillow's LOAD_TRUNCATED_IMAGES for the whole process, which would let a
    # truncated photo pass as whole (and be tagged). We want to hear about truncated files.
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    return api


@functools.lru_cache(maxsize=1)
def load_dlib() -> Any:
    """dlib itself, without face_recognition: importing that loads all four of its models, the 100 MB
    68-point landmark model among them, which phototag never uses (each worker paid for it)."""
    try:
        import dlib
    except ImportError as exc:
        raise DependencyError(f"cannot load dlib: {exc} (pip install dlib-bin)") from exc
    return dlib


def dlib_model_file(name: str) -> Path:
    """One of dlib's model files in the installed face_recognition_models, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        raise DependencyError("face_recognition_models is not installed (pip install face-recognition-models)")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise DependencyError(f"{path}: missing (reinstall face-recognition-models)")
    return path


def find_gpu() -> str | None:
    """The GPU Keras would run on, named, or None. Free where there is none: without an NVIDIA device
    file nothing is imported."""
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        return None
    try:
        keras = import_keras()
    except DependencyError:
        return None
    if keras.backend.backend() == "jax":
        import jax

        gpus = [str(d) for d in jax.devices() if d.platform == "gpu"]
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    else:
        gpus = []
    return f"{gpus[0]} (Keras on {keras.backend.backend()})" if gpus else None


def runtime_for_device(device: str) -> str:
    """'litert' (the CPU) or 'keras' (a GPU) for `--device`. auto is the CPU for now: a whole scan on an
    H200 ran at 0.53x-0.64x the speed of the same machine's 16 cores (bench/results/gpu.json), because
    each worker runs the networks per photo; auto will take the GPU once a GPU scan is the faster."""
    if device not in DEVICES:
        raise PhototagError(f"unknown device {device!r}: use auto, cpu or gpu")
    if device != "gpu":
        return "litert"
    if find_gpu() is None:
        raise DependencyError("--device gpu: no GPU that Keras can use (an NVIDIA GPU, and Keras with JAX or "
                              "TensorFlow built for CUDA: uv sync --extra train, or pip install 'jax[cuda12]' "
                              "keras); --device cpu runs everything on the CPU")
    return "keras"
