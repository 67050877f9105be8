"""What a keyword, and a person's name, may hold: each character that one reader of our tags would
split, nest or lose is refused with the reason (docs/people.md, "What a name may hold")."""

from __future__ import annotations

import unicodedata

__all__ = ["keyword_problem", "name_problem", "MAX_NAME_LENGTH", "KEYWORD_PREFIX"]

KEYWORD_PREFIX = "Age group: "
_GROUPS_PARENT = "Age group"  # People|Age group|Toddler in the sidecars' hierarchies

# A name is written as a keyword four ways and as a face region's name. Each character below would make
# one of those readers see something else than one person with that name.
_NAME_SEPARATORS = {
    ";": "which Windows' XPKeywords (Explorer's Tags) puts between keywords: it would read as two keywords",
    ",": "which exiftool, Lightroom's keyword field and most photo tools put between keywords: it would read "
         "as two keywords",
    "|": "which Lightroom's hierarchical keywords put between levels: People|A|B would read as a person B "
         "inside a tag A",
    "/": "which digiKam's tag paths put between levels: People/A/B would read as a person B inside a tag A",
}
MAX_NAME_LENGTH = 100  # characters: a whole name fits; 40 named faces still leave the EXIF segment room


def keyword_problem(text: str) -> str | None:
    """Why `text` cannot be written as one keyword (and one level of a tag path), or None when it can.

    The reason completes a sentence that starts with the text, and says which character and why."""
    for i, c in enumerate(text):
        if c in _NAME_SEPARATORS:
            return f"holds {c!r} (character {i + 1}), {_NAME_SEPARATORS[c]}"
        cat = unicodedata.category(c)
        if cat == "Cs":
            return (f"holds U+{ord(c):04X} (character {i + 1}), which is no character (an undecodable byte?): "
                    "it cannot be written as UTF-16 or UTF-8")
        if ord(c) > 0xFFFF:
            return (f"holds {c!r} (U+{ord(c):04X}, character {i + 1}), beyond Unicode's first 65,536 "
                    "characters: exiftool and other readers of Windows' XPKeywords (UCS-2) show it as '?'")
        if cat == "Cc" or c in "\ufffe\uffff":
            return (f"holds the control character U+{ord(c):04X} (character {i + 1}): XMP sidecars (XML) cannot "
                    "hold it, and it cannot be shown on one line")
    if not text.strip():
        return "is empty"
    if text != text.strip():
        return "begins or ends with a space, which Windows' XPKeywords drops"
    if len(text) > MAX_NAME_LENGTH:
        return f"is {len(text)} characters long: the most is {MAX_NAME_LENGTH}"
    return None


def name_problem(name: str) -> str | None:
    """Why a person's `name` cannot be written into tags as one person, or None when it can: what
    `keyword_problem` says, and names that would read as phototag's own age-group keywords."""
    if problem := keyword_problem(name):
        return problem
    if name.casefold() == _GROUPS_PARENT.casefold() or name.casefold().startswith(KEYWORD_PREFIX.strip().casefold()):
        return f"is or begins with {_GROUPS_PARENT!r}, which phototag's own age-group keywords use"
    return None
