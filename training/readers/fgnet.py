"""FG-NET (Lanitis, Taylor and Cootes): scanned personal photos, `001A02.JPG` is person 001 at 2.

The age in the name is in completed years; a letter after it (`001A43a.JPG`) tells two photos at the
same age apart. Many are black-and-white prints: evaluation reports them apart (training/evaluate.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from . import FaceRecord, ReadStats

_NAME = re.compile(r"^(?P<person>\d{3})A(?P<age>\d{2})(?P<tag>[a-z]?)\.jpe?g$", re.IGNORECASE)


def read(root: Path, stats: ReadStats) -> Iterator[FaceRecord]:
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.suffix.lower() not in (".jpg", ".jpeg"):
            continue
        m = _NAME.match(path.name)
        if m is None:
            stats.skip("name is not PPPAnn.JPG", path.name)
            continue
        yield FaceRecord(key=f"fgnet/{path.name}", image=path, source="fgnet", age=int(m["age"]),
                         person=f"fgnet/{m['person']}")
