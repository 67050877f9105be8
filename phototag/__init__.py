"""phototag: tag family photos with the age group of every person in them.

The public API is small; names resolve on first use, so `import phototag` loads neither dlib nor
TensorFlow:

    from phototag import Index, ScanOptions, load_model, scan
    with Index("photos.db") as index:
        summary = scan(["~/Pictures"], index, load_model(), writer=ExifWriter())
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "scan": "scan.pipeline", "ScanOptions": "scan.pipeline", "ScanSummary": "scan.pipeline",
    "Index": "store.index", "QueryFilters": "store.queries", "query": "store.queries",
    "load_model": "ages.model", "AgeModel": "ages.model",
    "Scheme": "ages.groups", "get_scheme": "ages.groups", "estimate": "ages.groups", "PRESETS": "ages.groups",
    "ExifWriter": "tags.exif", "NullWriter": "tags.exif", "read_tags": "tags.exif",
    "detect": "faces", "align_and_crop": "faces",
    "PhototagError": "errors",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'phototag' has no attribute {name!r}")
