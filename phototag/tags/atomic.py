"""Writing a file without ever losing it: stage a copy beside it, read it back, fsync it, give it the
original's permissions and modification time, then `os.replace` it over the original (and fsync the
folder). A killed run leaves only a staged copy, which the walk finds and the next run removes."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Callable

from ..errors import TagWriteError

__all__ = ["atomic_write", "atomic_replace", "discard_stale", "PhotoChangedError", "read_only"]


class PhotoChangedError(TagWriteError):
    """The photo was replaced or rewritten between our read and our write; we wrote nothing."""


def _stage(path: Path, data: bytes, cannot_create: Callable[[str], str], on_write_error: Callable[[str], str]) -> Path:
    """`data` in a new staged copy beside `path` (`.NAME.phototag-PID.tmp`, which the walk recognises
    and a later run deletes if we are killed), fsynced. The callables word the errors from a reason."""
    tmp = path.with_name(f".{path.name}.phototag-{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise TagWriteError(cannot_create(str(exc.strerror or exc))) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        _unlink_quietly(tmp)
        reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise TagWriteError(on_write_error(reason)) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path: Path, data: bytes | None) -> None:
    """Create, replace or (data None) delete a small file such as a sidecar, atomically.

    Unlike `atomic_replace` (photos) the file gets a new modification time: that is how darktable and
    digiKam notice a sidecar changed."""
    if data is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise TagWriteError(f"cannot remove its sidecar {path.name}: {exc.strerror or exc}") from exc
        _fsync_dir(path.parent)
        return
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    except OSError as exc:
        raise TagWriteError(f"cannot read its sidecar {path.name}: {exc.strerror or exc}") from exc
    tmp = _stage(path, data, lambda why: f"cannot write its sidecar {path.name} ({why})",
                 lambda why: f"{why} while writing its sidecar {path.name}; nothing changed")
    try:
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def discard_stale(path: Path, pid: int) -> bool:
    """Delete a staged copy whose writer is dead (killed mid-write); the photo itself was never touched."""
    if pid == os.getpid() or _pid_alive(pid):
        return False  # a write in progress, perhaps by a scan of another index
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_replace(path: Path, data: bytes, verify: Any = None, expect: os.stat_result | None = None) -> None:
    """Replace `path` with `data`: staged beside it, verified, fsynced, same mode and mtime, os.replace.

    `expect`: the file's stat when `data` was derived from it; if the file has changed since, nothing
    is written (we would overwrite someone else's newer file with a tagged copy of the old one)."""
    st = path.stat()
    if expect is not None and _identity(st) != _identity(expect):
        raise PhotoChangedError("the photo changed while it was being tagged; it is untouched")
    if st.st_nlink > 1:  # os.replace would leave the other names holding the old file
        raise TagWriteError(f"hard-linked file ({st.st_nlink} names), tags not written: "
                            "replacing it would split the links")
    tmp = _stage(path, data, lambda why: f"cannot write in its folder ({why}); the photo is untouched",
                 lambda why: f"{why} while writing tags; the photo is untouched")
    try:
        if verify is not None:
            verify(tmp.read_bytes())
        os.chmod(tmp, st.st_mode & 0o7777)
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except OSError:
            pass
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        if _identity(path.stat()) != _identity(st):
            raise PhotoChangedError("the photo changed while it was being tagged; it is untouched")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


def read_only(path: Path) -> bool:
    st = path.stat()
    return not (st.st_mode & 0o222) or not os.access(path, os.W_OK)
