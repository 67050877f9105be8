"""Named errors: the library raises these, the CLI turns each into one `Error: ...` line."""

from __future__ import annotations


class PhototagError(Exception):
    """Base class for every error phototag reports to a user."""

    exit_code = 2


class ModelError(PhototagError):
    """The model or its card is missing, unreadable, or asks for something we cannot honour."""


class DependencyError(PhototagError):
    """A runtime dependency (dlib, face_recognition, TensorFlow) cannot be loaded."""


class SchemeError(PhototagError):
    """An age-group scheme is unknown or malformed."""


class IndexLockedError(PhototagError):
    """Another scan holds the index."""

    exit_code = 3


class PhotoError(PhototagError):
    """One photo cannot be processed; the scan records it and carries on."""


class TagWriteError(PhotoError):
    """Tags could not be written into a photo; the original is untouched."""


class IndexFullError(PhototagError):
    """The disk (or the size limit) that holds the index is full: what was committed stays, the rest is
    done by the next run with room."""


class PeopleError(PhototagError):
    """A people command that cannot be carried out; nothing was changed."""
