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
    "scan": "pipeline", "ScanOptions": "pipeline", "ScanSummary": "pipeline",
    "Index": "index", "QueryFilters": "index", "query": "index",
    "load_model": "model", "AgeModel": "model",
    "Scheme": "groups", "get_scheme": "groups", "estimate": "groups", "PRESETS": "groups",
    "ExifWriter": "tags", "NullWriter": "tags", "read_tags": "tags",
    "detect": "faces", "align_and_crop": "faces",
    "PhototagError": "errors",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'phototag' has no attribute {name!r}")
