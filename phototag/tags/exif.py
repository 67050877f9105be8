"""EXIF tags in the photo: read, merge, write atomically, remove.

What we write: keywords in EXIF XPKeywords (UTF-16LE, `;`-separated: what Windows and digiKam show
as tags), merged with the user's own, and one JSON record in EXIF UserComment. A JPEG is rewritten
by splicing a new EXIF APP1 segment into the original bytes: every other segment (JFIF, ICC, XMP)
and the image data after them are copied byte for byte (`piexif.insert` would drop JFIF APP0).
The new file is staged beside the original, read back and checked, fsynced, given the original's
permissions and modification time, and only then moved over the original with `os.replace`.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import piexif

from ..errors import PhotoError, TagWriteError
from .atomic import PhotoChangedError, atomic_replace, atomic_write, discard_stale, read_only
from .names import KEYWORD_PREFIX, MAX_NAME_LENGTH, keyword_problem, name_problem

__all__ = [
    "TagRecord", "ExifWriter", "NullWriter", "read_tags", "encode_xp", "decode_xp", "merge_keywords",
    "KEYWORD_PREFIX", "RECORD_VERSION", "WRITABLE_FORMATS", "MultiWriter", "atomic_write", "name_problem",
    "keyword_problem", "MAX_NAME_LENGTH", "CodecError", "sniff", "PhotoChangedError", "ExifParseError",
    "atomic_replace", "discard_stale",
]

RECORD_VERSION = 1
WRITABLE_FORMATS = frozenset({"JPEG", "WEBP"})
_ASCII = b"ASCII\x00\x00\x00"
_UNICODE = b"UNICODE\x00"
_XP_KEYWORDS = piexif.ImageIFD.XPKeywords
_USER_COMMENT = piexif.ExifIFD.UserComment
_MAX_SEGMENT = 65533  # an APPn payload's largest size, its 2 length bytes aside


class CodecError(TagWriteError, ValueError):
    """A keyword list or record that cannot be encoded or decoded: the photo's tags are not written,
    and the scan reports that photo and goes on."""


class ExifParseError(TagWriteError):
    """The photo's EXIF cannot be parsed: we leave it alone (and it cannot hold tags of ours)."""


# How often a write starts over on a photo whose metadata alone changed under it (another scan's
# tags, another tool's keywords). Each try re-reads the file, so only a file rewritten that often
# within milliseconds runs out of tries.
_WRITE_TRIES = 8


# -- formats ---------------------------------------------------------------------------------

def sniff(head: bytes) -> str | None:
    """The image format that these first bytes announce, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"hevc", b"avif"):
        return "HEIF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    return None


# -- XPKeywords ------------------------------------------------------------------------------

def encode_xp(keywords: list[str]) -> tuple[int, ...]:
    """Keywords as XPKeywords bytes: UTF-16LE, `;`-separated, with a two-byte terminator."""
    for k in keywords:
        if ";" in k or "\x00" in k or not k.strip():
            raise CodecError(f"keyword {k!r} is empty or holds ';' or NUL")
    try:
        data = ";".join(keywords).encode("utf-16-le") + b"\x00\x00"
    except UnicodeEncodeError as exc:  # lone surrogates
        raise CodecError(f"keyword cannot be written as UTF-16: {exc}") from exc
    return tuple(data)


def decode_xp(value: Any) -> list[str]:
    """XPKeywords bytes (tuple of ints or bytes) to keywords; undecodable parts are replaced, not fatal."""
    if value is None:
        return []
    raw = bytes(value) if not isinstance(value, (bytes, bytearray)) else bytes(value)
    if len(raw) % 2:
        raw = raw[:-1]
    text = raw.decode("utf-16-le", errors="replace")
    text = text.split("\x00", 1)[0]
    return [k.strip() for k in text.split(";") if k.strip()]


def merge_keywords(existing: list[str], ours: list[str], previously_ours: list[str] = ()) -> list[str]:
    """The user's keywords, in their order, then ours: our old ones out, no duplicates."""
    drop = set(previously_ours)
    kept = [k for k in existing if k not in drop]
    out: list[str] = []
    for k in kept + list(ours):
        if k not in out:
            out.append(k)
    return out


# -- the UserComment record ------------------------------------------------------------------

@dataclass
class TagRecord:
    """What phototag wrote into a photo: enough to show it, and to remove exactly it again."""

    model: str
    scheme: str
    keywords: list[str]
    faces: list[dict[str, Any]] = field(default_factory=list)
    version: int = RECORD_VERSION
    size: tuple[int, int] | None = None  # the photo as shown (for sidecar face regions); not stored

    def to_comment(self) -> bytes:
        payload = {"phototag": self.version, "model": self.model, "scheme": self.scheme,
                   "keywords": self.keywords, "faces": self.faces}
        return _ASCII + json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_comment(cls, value: Any) -> "TagRecord | None":
        """Our record from a UserComment, None when the comment is someone else's; CodecError if ours but broken."""
        if value is None:
            return None
        raw = bytes(value)
        if raw.startswith(_ASCII):
            text = raw[8:].decode("ascii", "replace")
        elif raw.startswith(_UNICODE):
            body = raw[8:]
            text = body.decode("utf-16-be" if body[:1] == b"\x00" else "utf-16-le", "replace")
        else:
            return None
        text = text.rstrip("\x00 ")
        if not text.startswith('{"phototag"'):
            return None
        try:
            data = json.loads(text)
            return cls(model=str(data["model"]), scheme=str(data["scheme"]),
                       keywords=[str(k) for k in data["keywords"]], faces=list(data.get("faces", [])),
                       version=int(data["phototag"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CodecError(f"damaged phototag record in UserComment: {exc}") from exc


# -- JPEG segments ---------------------------------------------------------------------------

def _segments(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """[(marker, start, end)] of the header segments, and where the entropy-coded part begins."""
    if not data.startswith(b"\xff\xd8"):
        raise PhotoError("not a JPEG (no SOI marker)")
    pos, out = 2, []
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise PhotoError(f"corrupt JPEG header at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image: the rest is copied as is
            return out, pos
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise PhotoError("truncated JPEG header")
        out.append((marker, pos, end))
        pos = end
    raise PhotoError("truncated JPEG (no image data)")


def _is_exif(data: bytes, seg: tuple[int, int, int]) -> bool:
    marker, start, _ = seg
    return marker == 0xE1 and data[start + 4 : start + 10] == b"Exif\x00\x00"


def splice_exif(data: bytes, exif: bytes | None) -> bytes:
    """`data` with its EXIF APP1 replaced by `exif` (b'Exif\\0\\0...'), or removed when None."""
    segs, body = _segments(data)
    new_seg = b""
    if exif is not None:
        if len(exif) > _MAX_SEGMENT:
            raise TagWriteError(f"EXIF would be {len(exif)} bytes, over the JPEG limit of 64 KB")
        new_seg = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    parts, placed = [data[:2]], False
    exif_segs = [s for s in segs if _is_exif(data, s)]
    for i, seg in enumerate(segs):
        marker, start, end = seg
        if exif_segs and seg is exif_segs[0]:
            parts.append(new_seg)
            placed = True
            continue
        if seg in exif_segs:
            continue
        if not placed and not exif_segs and not (i == 0 and marker == 0xE0):
            parts.append(new_seg)  # after a leading JFIF APP0, before everything else
            placed = True
        parts.append(data[start:end])
    if not placed:
        parts.append(new_seg)
    parts.append(data[body:])
    return b"".join(parts)


def image_data(data: bytes) -> bytes:
    """A JPEG's bytes less its EXIF segment: what must never change when we tag."""
    segs, body = _segments(data)
    return b"".join(data[s:e] for m, s, e in segs if not _is_exif(data, (m, s, e))) + data[body:]


# -- reading and writing ---------------------------------------------------------------------

def _webp_chunks(data: bytes):
    """(fourcc, start, end) of each RIFF chunk of a WebP."""
    pos = 12
    while pos + 8 <= len(data):
        fourcc, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        end = min(len(data), pos + 8 + size + (size & 1))
        yield fourcc, pos, end
        pos = end


def content_hash(data: bytes) -> str:
    """SHA-256 of a photo's bytes outside EXIF (JPEG, WebP; whole file otherwise).

    Equal hashes mean only metadata changed: our own tag write, or the user's keywords from another
    tool. The pixels need no new look.
    """
    import hashlib

    h = hashlib.sha256()
    try:
        if data.startswith(b"\xff\xd8"):
            h.update(image_data(data))
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            # VP8X carries a flag for 'has EXIF', which our write may set: skip it with the EXIF chunk
            for fourcc, start, end in _webp_chunks(data):
                if fourcc not in (b"EXIF", b"VP8X"):
                    h.update(data[start:end])
        else:
            h.update(data)
    except PhotoError:
        h.update(data)
    return h.hexdigest()


def _webp_has_exif(data: bytes) -> bool:
    """Whether a WebP's RIFF chunks include EXIF (piexif raises on a WebP without one)."""
    return any(fourcc == b"EXIF" for fourcc, _, _ in _webp_chunks(data))


def _load_exif(data: bytes, fmt: str) -> dict[str, Any]:
    """piexif's dict of the photo's EXIF (empty when there is none); PhotoError when it is unreadable."""
    empty = {"0th": {}, "Exif": {}, "GPS": {}, "Interop": {}, "1st": {}, "thumbnail": None}
    try:
        if fmt == "JPEG":
            segs, _ = _segments(data)
            exif = [data[s + 4 : e] for m, s, e in segs if _is_exif(data, (m, s, e))]
            return piexif.load(exif[0]) if exif else empty
        return piexif.load(data) if fmt == "WEBP" and _webp_has_exif(data) else empty
    except PhotoError:
        raise
    except Exception as exc:  # noqa: BLE001 - piexif raises many kinds on broken EXIF
        raise ExifParseError(f"EXIF cannot be parsed, tags not written ({type(exc).__name__}: {exc})") from exc


def read_tags(path: str | Path) -> tuple[list[str], TagRecord | None]:
    """(all keywords, our record or None) of a photo."""
    data = Path(path).read_bytes()
    return read_tags_bytes(data, sniff(data[:16]) or "unknown")


class Writer(Protocol):
    """Writes a record into a photo; `NullWriter` stands in for `--dry-run` and `--no-exif`."""

    def write(self, path: Path, fmt: str, record: TagRecord) -> str: ...

    def remove(self, path: Path, fmt: str) -> bool: ...

    def discard_stale(self, path: Path, pid: int) -> bool: ...


class NullWriter:
    """Writes no tags. With `tidy` (--no-exif) it still deletes staged copies left by killed runs;
    without (--dry-run) it touches nothing at all."""

    def __init__(self, reason: str = "dry run", *, tidy: bool = False) -> None:
        self.reason = reason
        self.tidy = tidy

    def write(self, path: Path, fmt: str, record: TagRecord) -> str:
        return f"not written ({self.reason})"

    def remove(self, path: Path, fmt: str) -> bool:
        return False

    def discard_stale(self, path: Path, pid: int) -> bool:
        return self.tidy and discard_stale(path, pid)


class MultiWriter:
    """EXIF and sidecar together: each is tried, so a photo that cannot take EXIF (a PNG, a read-only
    file) still gets its sidecar; any failure is raised after the others have had their turn."""

    def __init__(self, *writers: Writer) -> None:
        self.writers = writers

    def write(self, path: Path, fmt: str, record: TagRecord) -> str:
        notes, errors = [], []
        for w in self.writers:
            try:
                notes.append(w.write(path, fmt, record))
            except TagWriteError as exc:
                errors.append(str(exc))
        sidecar_done = any(n.startswith("sidecar") for n in notes)
        # "not written (PNG cannot hold EXIF tags)" says nothing useful once the sidecar holds the tags
        notes = [n for n in notes if not (sidecar_done and n.startswith("not written (") and "cannot hold" in n)]
        if errors:
            done = [n for n in notes if n.startswith(("written", "sidecar written"))]
            raise TagWriteError(errors[0] + (f" ({'; '.join(done)})" if done else ""))
        if all(n in ("unchanged", "sidecar unchanged") for n in notes):
            return "unchanged"
        return "; ".join(notes)

    def remove(self, path: Path, fmt: str) -> bool:
        changed = False
        for w in self.writers:
            changed = w.remove(path, fmt) or changed
        return changed

    def discard_stale(self, path: Path, pid: int) -> bool:
        return discard_stale(path, pid)


class ExifWriter:
    """Writes our keywords and record into JPEG and WebP files, never losing anything else."""

    def _new_bytes(self, data: bytes, fmt: str, record: TagRecord | None) -> tuple[bytes, str]:
        """The photo's bytes with `record` in (None: with ours out); `data` itself when nothing changes.

        Only keywords we add are recorded as ours, so a keyword the user already had is never removed.
        """
        exif = _load_exif(data, fmt)
        old = TagRecord.from_comment(exif["Exif"].get(_USER_COMMENT))
        existing = decode_xp(exif["0th"].get(_XP_KEYWORDS))
        users = merge_keywords(existing, [], old.keywords if old else [])
        added = [k for k in (record.keywords if record else []) if k not in users]
        keywords = users + added
        comment = exif["Exif"].get(_USER_COMMENT)
        foreign = comment is not None and old is None and bytes(comment).strip(b"\x00 ") not in (b"", b"ASCII")
        note = "written"
        new_comment = comment
        if record is None:
            new_comment = None if old is not None else comment
        elif foreign:
            note = "written (keywords only: the photo's own UserComment was kept)"
        else:
            new_comment = TagRecord(record.model, record.scheme, added, record.faces, record.version).to_comment()
        if keywords == existing and new_comment == comment:
            return data, "unchanged"
        if keywords:
            exif["0th"][_XP_KEYWORDS] = encode_xp(keywords)
        else:
            exif["0th"].pop(_XP_KEYWORDS, None)
        if new_comment is None:
            exif["Exif"].pop(_USER_COMMENT, None)
        else:
            exif["Exif"][_USER_COMMENT] = new_comment
        try:
            dumped = piexif.dump(exif)
        except Exception as exc:  # noqa: BLE001
            raise TagWriteError(f"EXIF cannot be rewritten, tags not written ({type(exc).__name__}: {exc})") from exc
        if fmt == "JPEG":
            return splice_exif(data, dumped), note
        out = io.BytesIO()
        piexif.insert(dumped, data, out)
        return out.getvalue(), note

    def _apply(self, path: Path, fmt: str, record: TagRecord | None) -> str:
        """Write `record` (None: take ours out), starting over on the new bytes when only the photo's
        metadata changed under us (another scan, another tool): both writers' keywords survive. A
        photo whose image data changed is left as it is: our faces belong to the old picture."""
        if fmt not in WRITABLE_FORMATS:
            return f"not written ({fmt} cannot hold EXIF tags)"
        first: str | None = None
        for attempt in range(_WRITE_TRIES):
            try:
                st = path.stat()
                data = path.read_bytes()
            except OSError as exc:
                raise TagWriteError(f"cannot read: {exc.strerror or exc}") from exc
            if first is None:
                first = content_hash(data)
            elif content_hash(data) != first:
                raise PhotoChangedError("the photo's image data changed while it was being tagged; "
                                        "it is untouched")
            new, note = self._new_bytes(data, fmt, record)
            if new is data:
                return "unchanged"
            if read_only(path):
                raise TagWriteError("read-only file, tags not written")
            try:
                atomic_replace(path, new, self._verifier(data, fmt, record), expect=st)
            except PhotoChangedError:
                if attempt == _WRITE_TRIES - 1:
                    raise
                continue
            return note
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _verifier(data: bytes, fmt: str, record: TagRecord | None) -> Callable[[bytes], None]:
        """The read-back check of a staged copy made from `data`."""
        def verify(staged: bytes) -> None:
            if fmt == "JPEG" and image_data(staged) != image_data(data):
                raise TagWriteError("staged copy differs outside EXIF; the photo is untouched")
            kw, _ = read_tags_bytes(staged, fmt)
            if record is not None and not set(record.keywords) <= set(kw):
                raise TagWriteError("staged copy lost our keywords; the photo is untouched")
        return verify

    def write(self, path: Path, fmt: str, record: TagRecord) -> str:
        return self._apply(path, fmt, record)

    def discard_stale(self, path: Path, pid: int) -> bool:
        return discard_stale(path, pid)

    def remove(self, path: Path, fmt: str) -> bool:
        """Take out exactly what we added; True if the file changed."""
        try:
            return self._apply(path, fmt, None).startswith("written")
        except ExifParseError:
            return False  # EXIF we cannot read holds nothing we wrote


def read_tags_bytes(data: bytes, fmt: str) -> tuple[list[str], TagRecord | None]:
    """(all keywords, our record or None) of a photo's bytes in format `fmt`."""
    exif = _load_exif(data, fmt)
    return decode_xp(exif["0th"].get(_XP_KEYWORDS)), TagRecord.from_comment(exif["Exif"].get(_USER_COMMENT))
