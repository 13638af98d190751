"""Atomic writes: a reader never sees a half-written file, and an interrupted
write never destroys the previous version.  Also the guards around them: free
space checked before a write, leftovers of killed writes removed, folder locks."""

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path, replace=True):
    """Yield a temporary path beside ``path``; on success it is renamed onto
    ``path`` (atomic on POSIX), on failure it is removed.  ``replace=False`` claims
    ``path`` only if nothing is there by then (a hard link, atomic too), else raises
    FileExistsError and leaves what another process wrote alone."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    # The writer's process id in the name: cleanup never takes a live process's file.
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=f".tmp{ext}",
                               dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def can_write_in(folder):
    """Whether ``folder`` (perhaps not made yet) could be created and written in: its
    nearest existing ancestor is a writable folder.  A folder whose mode has no write bit
    counts as read-only even for root, whom os.access lets write anywhere: such a folder
    (a dataset's, say) was made read-only to keep outputs out."""
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    return (os.path.isdir(folder) and os.access(folder, os.W_OK)
            and bool(os.stat(folder).st_mode & 0o222))

def cache_folder(*parts):
    """A folder of the toolkit's caches (converted models, teacher outputs): under
    $XDG_CACHE_HOME or ~/.cache, outside the work tree, so a fresh checkout keeps them."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "sr-toolkit", *parts)


class DiskFull(OSError):
    """Not enough space for a write; the message is meant for the user."""


def is_disk_full(error):
    """Whether an exception (OSError, or h5py's wrapping of one) means 'no space left'."""
    return (getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            or "No space left" in str(error) or "Disk quota" in str(error))


def check_free_space(folder, needed_bytes, what):
    """Raise DiskFull before a write of about ``needed_bytes`` that would not fit."""
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise DiskFull(errno.ENOSPC, f"disk full: {what} needs about {human_size(needed_bytes)} "
                                     f"in {folder}, which has {human_size(free)} free")


def human_size(count):
    """Bytes in the unit that shows them: 812 KB, 3.4 MB, 2.5 GB."""
    for unit, size in (("GB", 2**30), ("MB", 2**20)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{max(count, 0) / 2**10:.0f} KB"


def is_leftover_temp(name):
    """Names atomic_path gives its temporary files (``.NAME.PID.XXXXXXXX.tmp.EXT``)."""
    return name.startswith(".") and ".tmp" in name


def _writer_alive(name):
    """Whether the process that named a temporary file is still running (not this one:
    a process removes only its own leftovers, or those of processes that are gone)."""
    head = name[: name.rfind(".tmp")]
    parts = head.rsplit(".", 2)
    if len(parts) < 3 or not parts[1].isdigit() or int(parts[1]) < 2:
        return False                      # an older name without the process id
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftover_temps(folder, bases=None):
    """Delete temporary files that killed atomic writes left in ``folder`` (all of them,
    or only those of the files named ``bases``, names without extension); a file whose
    writer still runs is left alone."""
    prefixes = tuple(f".{base}." for base in bases) if bases is not None else (".",)
    removed = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if is_leftover_temp(name) and name.startswith(prefixes) \
                    and not _writer_alive(name) \
                    and os.path.isfile(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


class FolderLocked(Exception):
    """Another process holds the folder's lock."""


def lock_folder(folder):
    """Hold an exclusive lock on ``folder`` until the returned descriptor is closed or
    the process ends (the OS releases it even after a kill -9)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderLocked(f"{folder} is in use by another process") from None
    return fd
