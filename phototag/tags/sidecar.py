"""XMP sidecars: where Lightroom, darktable, digiKam and most photo managers look for keywords and faces.

A sidecar holds our keywords three ways (flat `dc:subject`, Lightroom's `lr:hierarchicalSubject`,
digiKam's `digiKam:TagsList`) and one MWG face region per face, named with its group and age. A
sidecar that already exists is merged into: every field, keyword and region that is not ours stays.
What we added is listed in `phototag:Record`, so that `untag` and a re-tag remove exactly that.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import TagWriteError
from .atomic import atomic_write, discard_stale

__all__ = ["SidecarWriter", "sidecar_path", "read_sidecar", "SidecarContent", "STYLES", "HIERARCHY"]

# Where a photo's sidecar lives: `IMG_0042.jpg.xmp` (darktable, digiKam) or `IMG_0042.xmp` (Lightroom).
STYLES = ("append", "replace")
HIERARCHY = ("People", "Age group")  # People|Age group|Toddler
PEOPLE = "People"  # People|Alice

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/",
    "stArea": "http://ns.adobe.com/xmp/sType/Area#",
    "stDim": "http://ns.adobe.com/xap/1.0/sType/Dimensions#",
    "phototag": "https://github.com/phototag/phototag/ns/1.0/",
}
_RECORD_VERSION = 1


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


RDF_DESC, RDF_LI, RDF_BAG, RDF_SEQ = _q("rdf", "Description"), _q("rdf", "li"), _q("rdf", "Bag"), _q("rdf", "Seq")
PARSE_TYPE = _q("rdf", "parseType")
SUBJECT, HIER, TAGSLIST = _q("dc", "subject"), _q("lr", "hierarchicalSubject"), _q("digiKam", "TagsList")
REGIONS, RECORD = _q("mwg-rs", "Regions"), _q("phototag", "Record")


def sidecar_path(photo: str | Path, style: str = "append") -> Path:
    """`IMG_0042.jpg.xmp` for style 'append', `IMG_0042.xmp` for 'replace'."""
    photo = Path(photo)
    if style == "append":
        return photo.with_name(photo.name + ".xmp")
    if style == "replace":
        return photo.with_suffix(".xmp")
    raise ValueError(f"unknown sidecar style {style!r}: use append or replace")


@dataclass
class SidecarContent:
    """What a sidecar says, as phototag's tests and `show` read it."""

    subject: list[str] = field(default_factory=list)
    hierarchical: list[str] = field(default_factory=list)
    tagslist: list[str] = field(default_factory=list)
    regions: list[dict[str, Any]] = field(default_factory=list)
    record: dict[str, Any] | None = None


# -- the parts of a sidecar we write ------------------------------------------------------------

@dataclass(frozen=True)
class _Ours:
    """Everything phototag puts into one sidecar."""

    subject: tuple[str, ...]
    hierarchical: tuple[str, ...]
    tagslist: tuple[str, ...]
    regions: tuple[tuple[str, str, str, str, str, str], ...]  # name, x, y, w, h (normalised), description
    size: tuple[int, int] | None

    @classmethod
    def of(cls, keywords: list[str], groups: list[str], faces: list[dict[str, Any]],
           size: tuple[int, int] | None) -> "_Ours":
        regions = []
        names: list[str] = []
        if size:
            w, h = size
            for f in faces:
                top, right, bottom, left = f["box"]
                area = ((left + right) / 2 / w, (top + bottom) / 2 / h, (right - left) / w, (bottom - top) / h)
                # Photo managers (digiKam, Immich) make a person of every region Name: only a person's
                # real name goes there, never the age group.
                regions.append((f.get("person") or "", *(f"{v:.5f}" for v in area),
                                f"{f['group']} (~{f.get('shown') or format(f['age'], '.0f')})"))
        for f in faces:
            if f.get("person") and f["person"] not in names:
                names.append(f["person"])
        people = [(PEOPLE, n) for n in names]
        paths = [(*HIERARCHY, g) for g in groups] + people
        return cls(tuple(keywords), tuple("|".join(p) for p in paths), tuple("/".join(p) for p in paths),
                   tuple(regions), size)

    def record(self, photo: str, added: dict[str, list]) -> str:
        return json.dumps({"phototag": _RECORD_VERSION, "photo": photo, **added}, ensure_ascii=True,
                          separators=(",", ":"))


# -- XML helpers --------------------------------------------------------------------------------

def _register(extra: Iterable[tuple[str, str]] = ()) -> None:
    """ElementTree writes the prefixes it knows; keep the sidecar's own, and ours, readable."""
    for prefix, uri in [*NS.items(), *extra]:
        if prefix and not re.fullmatch(r"ns\d+", prefix):
            try:
                ET.register_namespace(prefix, uri)
            except ValueError:
                pass


def _parse(data: bytes) -> ET.Element:
    """The x:xmpmeta (or bare rdf:RDF) root of a sidecar; TagWriteError when it is not XMP."""
    import io

    prefixes = []
    try:
        parser = ET.XMLParser()
        events = ET.iterparse(io.BytesIO(data), events=("start-ns",), parser=parser)
        for _, ns in events:
            prefixes.append(ns)
        root = events.root  # type: ignore[attr-defined]
    except ET.ParseError as exc:
        raise TagWriteError(f"its sidecar is not valid XML ({exc}); tags not written to it") from exc
    _register(prefixes)
    if root.tag not in (_q("x", "xmpmeta"), _q("rdf", "RDF")) or _rdf(root) is None:
        raise TagWriteError("its sidecar is XML but not XMP (no rdf:RDF); tags not written to it")
    return root


def _rdf(root: ET.Element) -> ET.Element | None:
    return root if root.tag == _q("rdf", "RDF") else root.find(_q("rdf", "RDF"))


def _new_root() -> ET.Element:
    _register()
    root = ET.Element(_q("x", "xmpmeta"), {_q("x", "xmptk"): "phototag"})
    rdf = ET.SubElement(root, _q("rdf", "RDF"))
    ET.SubElement(rdf, RDF_DESC, {_q("rdf", "about"): ""})
    return root


def _serialise(root: ET.Element) -> bytes:
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body +
            '\n<?xpacket end="w"?>\n').encode("utf-8")


def _find_prop(rdf: ET.Element, tag: str) -> tuple[ET.Element, ET.Element] | None:
    """(description, property element) of the first `tag` in any rdf:Description."""
    for desc in rdf.findall(RDF_DESC):
        el = desc.find(tag)
        if el is not None:
            return desc, el
    return None


def _container(prop: ET.Element, kind: str) -> ET.Element:
    box = prop.find(RDF_BAG)
    if box is None:
        box = prop.find(RDF_SEQ)
    if box is None:
        box = ET.SubElement(prop, kind)
    return box


def _items(prop: ET.Element | None) -> list[str]:
    if prop is None:
        return []
    box = prop.find(RDF_BAG)
    if box is None:
        box = prop.find(RDF_SEQ)
    return [(li.text or "") for li in box.findall(RDF_LI)] if box is not None else []


def _first_desc(rdf: ET.Element) -> ET.Element:
    desc = rdf.find(RDF_DESC)
    if desc is None:
        desc = ET.SubElement(rdf, RDF_DESC, {_q("rdf", "about"): ""})
    return desc


def _region_parts(regions: ET.Element) -> tuple[ET.Element, ET.Element | None]:
    """The element holding AppliedToDimensions/RegionList (parseType Resource or a nested Description)."""
    inner = regions.find(RDF_DESC)
    holder = inner if inner is not None else regions
    return holder, holder.find(_q("mwg-rs", "RegionList"))


def _struct_fields(li: ET.Element) -> ET.Element:
    inner = li.find(RDF_DESC)
    return inner if inner is not None else li


def _field(el: ET.Element, prefix: str, name: str) -> str | None:
    """A struct field written as an attribute or as a child element."""
    tag = _q(prefix, name)
    if tag in el.attrib:
        return el.attrib[tag]
    child = el.find(tag)
    return child.text if child is not None else None


def _region_key(li: ET.Element) -> tuple[str, ...] | None:
    s = _struct_fields(li)
    area = s.find(_q("mwg-rs", "Area"))
    if area is None:
        return None
    area = _struct_fields(area)
    return (_field(s, "mwg-rs", "Name") or "", *(_field(area, "stArea", k) or "" for k in "xywh"))


# -- merging ------------------------------------------------------------------------------------

def _remove_ours(rdf: ET.Element, record: dict[str, Any]) -> None:
    """Take out exactly the entries `record` says we added; drop what that leaves empty."""
    for tag, key in ((SUBJECT, "subject"), (HIER, "hierarchical"), (TAGSLIST, "tagslist")):
        found = _find_prop(rdf, tag)
        if not found:
            continue
        desc, prop = found
        ours = set(record.get(key, []))
        box = _container(prop, RDF_BAG)
        for li in list(box.findall(RDF_LI)):
            if (li.text or "") in ours:
                box.remove(li)
        if not box.findall(RDF_LI):
            desc.remove(prop)
    found = _find_prop(rdf, REGIONS)
    if found:
        desc, regions = found
        holder, rlist = _region_parts(regions)
        ours = {tuple(r) for r in record.get("regions", [])}
        if rlist is not None:
            box = _container(rlist, RDF_BAG)
            for li in list(box.findall(RDF_LI)):
                if _region_key(li) in ours:
                    box.remove(li)
            if not box.findall(RDF_LI):
                holder.remove(rlist)
        dims = holder.find(_q("mwg-rs", "AppliedToDimensions"))
        if record.get("dimensions") and dims is not None and holder.find(_q("mwg-rs", "RegionList")) is None:
            holder.remove(dims)
        if len(holder) == 0:
            desc.remove(regions)
    found = _find_prop(rdf, RECORD)
    if found:
        found[0].remove(found[1])


def _add_ours(rdf: ET.Element, ours: _Ours) -> dict[str, list]:
    """Add our entries that are not there already; return what was added (for the record)."""
    added: dict[str, list] = {}
    for tag, key, values, kind in ((SUBJECT, "subject", ours.subject, RDF_BAG),
                                   (HIER, "hierarchical", ours.hierarchical, RDF_BAG),
                                   (TAGSLIST, "tagslist", ours.tagslist, RDF_SEQ)):
        if not values:
            continue
        found = _find_prop(rdf, tag)
        prop = found[1] if found else ET.SubElement(_first_desc(rdf), tag)
        box = _container(prop, kind)
        have = {(li.text or "") for li in box.findall(RDF_LI)}
        new = [v for v in values if v not in have]
        for v in new:
            ET.SubElement(box, RDF_LI).text = v
        added[key] = new
    if ours.regions and ours.size:
        found = _find_prop(rdf, REGIONS)
        if found:
            regions = found[1]
        else:
            regions = ET.SubElement(_first_desc(rdf), REGIONS, {PARSE_TYPE: "Resource"})
        holder, rlist = _region_parts(regions)
        if holder.find(_q("mwg-rs", "AppliedToDimensions")) is None:
            w, h = ours.size
            dims = ET.Element(_q("mwg-rs", "AppliedToDimensions"),
                              {_q("stDim", "w"): str(w), _q("stDim", "h"): str(h), _q("stDim", "unit"): "pixel"})
            holder.insert(0, dims)
            added["dimensions"] = [w, h]
        if rlist is None:
            rlist = ET.SubElement(holder, _q("mwg-rs", "RegionList"))
        box = _container(rlist, RDF_BAG)
        have = {_region_key(li) for li in box.findall(RDF_LI)}
        added["regions"] = []
        for name, x, y, w, h, description in ours.regions:
            if (name, x, y, w, h) in have:
                continue
            li = ET.SubElement(box, RDF_LI, {PARSE_TYPE: "Resource"})
            ET.SubElement(li, _q("mwg-rs", "Area"), {_q("stArea", "x"): x, _q("stArea", "y"): y,
                                                      _q("stArea", "w"): w, _q("stArea", "h"): h,
                                                      _q("stArea", "unit"): "normalized"})
            if name:
                ET.SubElement(li, _q("mwg-rs", "Name")).text = name
            ET.SubElement(li, _q("mwg-rs", "Type")).text = "Face"
            ET.SubElement(li, _q("mwg-rs", "Description")).text = description
            added["regions"].append([name, x, y, w, h])
    return added


def _read_record(rdf: ET.Element) -> dict[str, Any] | None:
    found = _find_prop(rdf, RECORD)
    if not found:
        return None
    try:
        rec = json.loads(found[1].text or "")
        return rec if isinstance(rec, dict) and "phototag" in rec else None
    except ValueError:
        return None


def _is_empty(rdf: ET.Element) -> bool:
    """Nothing left but empty descriptions: the sidecar holds nothing of anyone's."""
    for desc in rdf:
        if desc.tag != RDF_DESC or len(desc) or any(k != _q("rdf", "about") for k in desc.attrib):
            return False
    return True


def read_sidecar(path: str | Path) -> SidecarContent:
    """Keywords, regions and our record from a sidecar (for `show` and tests)."""
    rdf = _rdf(_parse(Path(path).read_bytes()))
    assert rdf is not None
    out = SidecarContent(subject=_items(_prop(rdf, SUBJECT)), hierarchical=_items(_prop(rdf, HIER)),
                         tagslist=_items(_prop(rdf, TAGSLIST)), record=_read_record(rdf))
    found = _find_prop(rdf, REGIONS)
    if found:
        _, rlist = _region_parts(found[1])
        if rlist is not None:
            for li in _container(rlist, RDF_BAG).findall(RDF_LI):
                key = _region_key(li)
                if key:
                    out.regions.append({"name": key[0], "x": float(key[1] or 0), "y": float(key[2] or 0),
                                        "w": float(key[3] or 0), "h": float(key[4] or 0),
                                        "type": _field(_struct_fields(li), "mwg-rs", "Type"),
                                        "description": _field(_struct_fields(li), "mwg-rs", "Description")})
    return out


def _prop(rdf: ET.Element, tag: str) -> ET.Element | None:
    found = _find_prop(rdf, tag)
    return found[1] if found else None


# -- the writer ---------------------------------------------------------------------------------

class SidecarWriter:
    """Writes our tags into `PHOTO.xmp` sidecars, merged into what is there, atomically."""

    def __init__(self, style: str = "append") -> None:
        sidecar_path("x.jpg", style)  # validates the style
        self.style = style

    def path_for(self, photo: Path) -> Path:
        return sidecar_path(photo, self.style)

    def write(self, path: Path, fmt: str, record: Any) -> str:
        groups = [k.split(": ", 1)[1] for k in record.keywords if ": " in k]
        ours = _Ours.of(list(record.keywords), groups, record.faces, record.size)
        return self._apply(path, ours)

    def remove(self, path: Path, fmt: str) -> bool:
        return self._apply(path, None).startswith(("sidecar written", "sidecar removed"))

    def discard_stale(self, path: Path, pid: int) -> bool:
        return discard_stale(path, pid)

    def _apply(self, photo: Path, ours: _Ours | None) -> str:
        side = self.path_for(photo)
        try:
            data = side.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise TagWriteError(f"cannot read its sidecar {side.name}: {exc.strerror or exc}") from exc
        if data is None and ours is None:
            return "no sidecar"
        root = _parse(data) if data is not None else _new_root()
        rdf = _rdf(root)
        assert rdf is not None
        old = _read_record(rdf)
        theirs = old is not None and old.get("photo") not in (None, photo.name)  # IMG.jpg and IMG.png: IMG.xmp
        if ours is None and (old is None or theirs):
            return "sidecar unchanged"  # nothing of ours in it to remove
        if theirs:
            raise TagWriteError(f"its sidecar {side.name} holds tags of {old['photo']} "
                                "(photos sharing a name stem: use --sidecar-style append)")
        if old is not None:
            _remove_ours(rdf, old)
        if ours is not None:
            added = _add_ours(rdf, ours)
            _first_desc(rdf).append(_record_element(ours.record(photo.name, added)))
        if ours is None and _is_empty(rdf):
            atomic_write(side, None)
            return "sidecar removed"
        new = _serialise(root)
        if data is not None and new == data:
            return "sidecar unchanged"
        _check_readable(new, side)
        atomic_write(side, new)
        return "sidecar written"


def _check_readable(data: bytes, side: Path) -> None:
    """ElementTree writes any text, also characters XML cannot hold (control characters): a sidecar is
    written only when it parses back, so no reader ever meets a broken one."""
    try:
        ET.fromstring(data)
    except ET.ParseError as exc:
        raise TagWriteError(f"its sidecar {side.name} would not be valid XML ({exc}); it is untouched") from exc


def _record_element(text: str) -> ET.Element:
    el = ET.Element(RECORD)
    el.text = text
    return el
