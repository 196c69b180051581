"""File helpers every tool shares: ``-`` for stdin/stdout, atomic outputs, numbered lines.

No typer here: library modules (``video``, ``records``, ``h5io``) import these.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import sys
from pathlib import Path
from typing import IO, Iterator

from .errors import UsageError, VtcavError

STDIO = "-"


def display_name(path: str) -> str:
    """How a path is named in messages: ``<stdin>`` for ``-``."""
    return "<stdin>" if path == STDIO else str(path)


def open_text_input(path: str) -> IO[str]:
    """A path or ``-`` (standard input) opened for reading text, with a clear error."""
    if path == STDIO:
        if sys.stdin is None or sys.stdin.closed:
            raise VtcavError(f"{display_name(path)}: standard input is closed (give a file, or pipe records in)")
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:
            return sys.stdin   # already text (a test's StringIO)
        # Strict UTF-8 whatever the locale: Python decodes stdin with surrogateescape under
        # the C locale, and a latin-1 stream then passes as text with lone surrogates.
        import io

        return io.TextIOWrapper(buffer, encoding="utf-8", errors="strict", newline=None)
    p = Path(path)
    if not p.exists():
        raise VtcavError(f"{path}: no such file")
    if p.is_dir():
        raise VtcavError(f"{path}: is a directory, expected a file")
    note_input(p)
    try:
        return open(p, encoding="utf-8")
    except OSError as err:
        raise VtcavError(f"{path}: cannot read ({err.strerror or err})") from None


# A temporary output is ``.NAME.vtcav-PID.tmp<suffix>`` beside NAME: findable, and its
# PID tells whether the run that made it is still alive (see remove_stale_temps).
_TEMP_MARK = ".vtcav-"
_live_temps: dict[Path, None] = {}   # ordered: removed last-made first
# Write failures that mean "the output cannot be written here", not a bug.
WRITE_ERRNOS = {errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ENOENT}


# Most file systems allow 255 bytes a name; the temporary adds up to ~40 to the output's.
_NAME_MAX = 255


def _temp_stem(final: Path) -> str:
    """The output's name as it appears in its temporaries: the name itself, or for a name
    too long to take the additions, its start and a hash of the whole (a legal long output
    name must not be refused because its temporary name would be too long)."""
    name = final.name
    if len(os.fsencode(name)) <= _NAME_MAX - 48:
        return name
    import hashlib

    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    head = os.fsencode(name)[:120].decode("utf-8", "ignore")
    return f"{head}~{digest}"


def temp_name(final: Path, suffix: str = "", pid: int | None = None) -> Path:
    """The temporary path a run with ``pid`` writes ``final`` to."""
    return final.with_name(f".{_temp_stem(final)}{_TEMP_MARK}{pid or os.getpid()}.tmp{suffix}")


def final_name(path: str | os.PathLike) -> str:
    """The output a temporary path stands for (messages name the file the user asked for).

    >>> final_name("out/.acts.h5.vtcav-4242.tmp.h5")
    'out/acts.h5'
    """
    path = Path(path)
    name = path.name
    mark = name.rfind(_TEMP_MARK)
    if name.startswith(".") and mark > 1 and ".tmp" in name[mark:]:
        return str(path.with_name(name[1:mark]))
    return str(path)


def live_temps() -> list[Path]:
    """What this process must remove if it is stopped now (temporary outputs, and files a
    multi-file command made so far), most recent first; the frame does it on SIGTERM/SIGINT."""
    return list(reversed(_live_temps))


def remove_on_abort(path: Path) -> None:
    """Register a file or folder this run made, to be removed if the run is stopped."""
    _live_temps[Path(path)] = None


def keep(path: Path) -> None:
    """The run no longer needs ``path`` removed if stopped (it is complete, or gone)."""
    _live_temps.pop(Path(path), None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(final: Path) -> list[Path]:
    """Remove temporaries of ``final`` left by runs that were killed (their PID is gone)."""
    removed = []
    prefix = f".{_temp_stem(final)}{_TEMP_MARK}"
    with contextlib.suppress(OSError):
        for entry in final.parent.iterdir():
            name = entry.name
            if not name.startswith(prefix) or ".tmp" not in name[len(prefix):]:
                continue
            pid = name[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


_hard_exit = False


def request_hard_exit() -> None:
    """After a failed HDF5 write, the frame exits without the interpreter's final clean-up
    (h5py objects freed then can crash it: a segfault instead of exit 1)."""
    global _hard_exit
    _hard_exit = True


def hard_exit_requested() -> bool:
    return _hard_exit


# --------------------------------------------------------------------------- one writer at a time
@contextlib.contextmanager
def exclusive_output(path: str | os.PathLike, shown: str | os.PathLike | None = None) -> Iterator[None]:
    """Hold an exclusive lock (fcntl.flock) on ``path`` as an output while the body runs.

    Two ``vt-concepts ... --append -o c.h5`` at once would each read c.h5, add their set and
    rename their file over it: one set lost, both exit 0. With the lock the second waits
    for the first and then reads the file the first wrote. The lock is a file
    ``.NAME.vtcav-lock`` beside the output, removed when released (a holder checks, after
    locking, that the file it locked is still the one at that path).
    """
    import fcntl

    from . import messages

    final = Path(os.path.realpath(path))
    lock = final.with_name(f".{_temp_stem(final)}.vtcav-lock")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(shown or path, err) from None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise write_error(shown or path, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            messages.info(f"{shown or path}: another run is writing it; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(OSError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)   # the holder before us removed it: lock the new one
    remove_on_abort(lock)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()   # while still holding it: a waiter then sees a stale inode and retries
        keep(lock)
        os.close(fd)


# --------------------------------------------------------------------------- disk space
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def _fallocate(fd: int, mode: int, offset: int, length: int) -> int:
    """Linux fallocate(2) (os has only posix_fallocate, which moves the end of the file);
    0, or the errno (EOPNOTSUPP where the call or the file system lacks it)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.fallocate
    except (OSError, AttributeError):
        return errno.EOPNOTSUPP
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return 0 if call(fd, mode, offset, length) == 0 else ctypes.get_errno()


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} bytes"


def reserve_space(path: str | os.PathLike, size: int, shown: str | os.PathLike) -> None:
    """Make sure ``size`` bytes can be written to ``path`` before writing them.

    HDF5 cannot survive a write the system refuses: after ENOSPC or EFBIG its cache is
    broken and closing any file (or the interpreter's exit) can crash with SIGSEGV.  So the
    space a writer will need is claimed up front: the file-size limit (``ulimit -f``) is
    compared with ``size``, and the disk blocks are allocated beyond the end of the file
    (fallocate with KEEP_SIZE, so HDF5 still sees its own end of file), where the writes
    then land.  A full disk is then one clear error before anything is written;
    :func:`release_space` gives back what was not used.
    """
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size > limit:
        raise write_error(shown, OSError(errno.EFBIG, f"File too large: it needs about {_size(size)}, "
                                                      f"the file-size limit (ulimit -f) is {_size(limit)}"))
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as err:
        raise write_error(shown, err) from None
    try:
        code = _fallocate(fd, _FALLOC_FL_KEEP_SIZE, 0, size)
        if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            free = os.statvfs(path)
            code = errno.ENOSPC if free.f_bavail * free.f_frsize < size else 0
        if code:
            why = (f"No space left on device: it needs about {_size(size)}, {_size(_free(path))} free"
                   if code in (errno.ENOSPC, errno.EDQUOT) else os.strerror(code))
            raise write_error(shown, OSError(code, why))
    finally:
        os.close(fd)


def _free(path) -> int:
    try:
        free = os.statvfs(path)
        return free.f_bavail * free.f_frsize
    except OSError:
        return 0


def release_space(path: str | os.PathLike) -> None:
    """Give back the blocks :func:`reserve_space` allocated beyond the end of the file."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY)
        try:
            end = os.fstat(fd).st_size
            _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, end, 1 << 50)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- memory
def available_memory() -> int:
    """Bytes this process may still allocate: the least of the system's available memory,
    the cgroup's limit less its usage, and the address-space limit (ulimit -v)."""
    import resource

    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(0, int(limit) - used))
    with contextlib.suppress(ValueError, OSError):
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            found.append(soft)
    return min(found) if found else 1 << 62


def check_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, an array that cannot fit in memory (``--size 30000``, an
    .npy declaring 2 TiB): one error line instead of MemoryError or the OOM killer."""
    free = available_memory()
    if nbytes > free:
        raise VtcavError(f"{what}: needs {_size(nbytes)} of memory, {_size(free)} available")


def fail_hdf5_write(path: str | os.PathLike, err: Exception) -> VtcavError:
    """A write into an open HDF5 file failed (full disk, file-size limit).

    Inside a command the run ends here, at once: unwinding would close HDF5 files, and
    HDF5 after a refused write crashes (SIGSEGV) doing so. The temporary files are
    removed, one error line is printed, and the process exits 1 without the
    interpreter's clean-up. Outside a command (a library caller) the error is returned
    to be raised.
    """
    import re

    found = re.search(r"error message = '([^']+)'", str(err))
    reason = found.group(1) if found else (getattr(err, "strerror", None) or str(err).splitlines()[0]
                                           if str(err) else type(err).__name__)
    error = write_error(path, OSError(getattr(err, "errno", None), reason))
    if _inputs is None:
        request_hard_exit()
        return error
    from . import messages

    messages.stop_progress()
    for temp in live_temps():
        with contextlib.suppress(OSError):
            temp.rmdir() if temp.is_dir() else temp.unlink()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        os.write(2, f"{messages._prog}: error: {one_line(str(error))}\n".encode())
    os._exit(1)


def one_line(text: str) -> str:
    r"""``text`` with control characters (a newline in a file name) escaped: one line.

    >>> print(one_line("a" + chr(10) + "b.h5: no such file"))
    a\nb.h5: no such file
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def write_error(path: str | os.PathLike, err: OSError) -> VtcavError:
    """``OUT: cannot write (File too large)``: an OS write failure as a one-line error."""
    reason = (err.strerror or str(err) or type(err).__name__).strip().splitlines()[0]
    return VtcavError(f"{path}: cannot write ({reason})")


def refused_write(err: Exception) -> OSError | None:
    """The OSError inside an HDF5 error that reports a write the system refused (h5py raises
    a full disk or file-size limit met while flushing or closing as a RuntimeError, the errno
    only in its text), or None when ``err`` is anything else.

    >>> refused_write(RuntimeError("Can't decrement id ref count (unable to extend file properly, "
    ...                            "errno = 27, error message = 'File too large')")).strerror
    'File too large'
    """
    found = re.search(r"errno = (\d+), error message = '([^']+)'", str(err))
    if found and int(found.group(1)) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return OSError(int(found.group(1)), found.group(2))
    return None


# --------------------------------------------------------------------------- inputs vs outputs
# Every file a command reads, noted while the command runs (the frame notes its path
# arguments; video.py the videos it opens): every write below (atomic_path, claim_temp,
# the shard sidecar, vt-merge) refuses a target that is one of them, whichever option
# named it (-o, --pictures, --markdown, a twin, a sidecar, a review folder). The frame
# turns the registry on for one run (begin_run); outside a command nothing is checked.
_inputs: dict[tuple[int, int], str] | None = None


def begin_run() -> None:
    """Start noting inputs (the frame, at the start of each command)."""
    global _inputs
    _inputs = {}
    _hdf5_read.clear()


def end_run() -> None:
    global _inputs
    _inputs = None


def note_input(path: str | os.PathLike) -> None:
    """``path`` is read by this command: no output may replace it."""
    if _inputs is None or path is None or str(path) in ("", STDIO):
        return
    with contextlib.suppress(OSError, ValueError):
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode):
            _inputs.setdefault((info.st_dev, info.st_ino), str(path))


_hdf5_read: list[str] = []   # HDF5 files this command opened for reading, in order


def note_hdf5_input(path: str | os.PathLike) -> None:
    """An HDF5 file opened for reading: a damaged chunk found later (h5py's error does not
    say which file) is reported naming it (see frame._os_error_line)."""
    note_input(path)
    if _inputs is not None and str(path) not in _hdf5_read:
        _hdf5_read.append(str(path))


def hdf5_inputs() -> list[str]:
    return list(_hdf5_read)


def replacing_input(path: str | os.PathLike) -> None:
    """The command reads ``path`` in order to replace it (``--append``): not an input that
    outputs must spare. (An input named on the command line was refused as -o before.)"""
    if _inputs is None:
        return
    with contextlib.suppress(OSError, ValueError):
        info = os.stat(path)
        _inputs.pop((info.st_dev, info.st_ino), None)
        with contextlib.suppress(ValueError):
            _hdf5_read.remove(str(path))


def check_output(path: str | os.PathLike, shown: str | os.PathLike | None = None) -> None:
    """A usage error when writing ``path`` would replace an input of this command
    (the same file by any spelling: symbolic links, ``./``, hard links)."""
    if not _inputs or path is None or str(path) in ("", STDIO):
        return
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return
    same = _inputs.get((info.st_dev, info.st_ino))
    if same is not None and stat.S_ISREG(info.st_mode):
        raise UsageError(f"{shown or path}: the output is also an input ({same}); choose another output path")


def output_target(path: str | os.PathLike) -> tuple[Path, bool]:
    """Where an output really goes, and whether it must be written in place.

    A symbolic link is followed (its target is replaced, the link stays); something
    that is not a regular file (a character device such as /dev/null, a FIFO) is
    written into directly, never renamed over. A target that is an input of the
    running command is refused (:func:`check_output`).
    """
    check_output(path)
    final = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        mode = final.stat().st_mode
    except FileNotFoundError:
        return final, False
    except OSError as err:
        raise write_error(path, err) from None
    if stat.S_ISDIR(mode):
        raise VtcavError(f"{path}: is a directory, expected a file to write")
    return final, not stat.S_ISREG(mode)


def claim_temp(final: Path, suffix: str = "", shown: str | os.PathLike | None = None) -> Path:
    """Create this process's temporary file for ``final`` (``.NAME.vtcav-PID.tmp<suffix>``),
    registered so that SIGTERM removes it; a write the system refuses names ``shown``."""
    shown = final if shown is None else shown
    check_output(final, shown)
    tmp = temp_name(final, suffix)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise VtcavError(f"{shown}: cannot write (a part of the path is a file, not a folder)") from None
    except OSError as err:
        raise write_error(shown, err) from None
    remove_on_abort(tmp)   # before it exists: a signal just after creating it still finds it
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a stale file of a dead run that had our PID
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        keep(tmp)
        if err.errno == errno.ENOTDIR:
            raise VtcavError(f"{shown}: cannot write (a part of the path is a file, not a folder)") from None
        raise write_error(shown, err) from None
    return tmp


def release_temp(tmp: Path) -> None:
    """Remove a temporary file (if still there) and forget it."""
    with contextlib.suppress(OSError):
        tmp.unlink()
    keep(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only.

    An interrupted or failed run leaves no half-written file that looks whole, and an
    existing file at ``path`` is kept untouched until the new one is complete.  A
    device or FIFO at ``path`` is yielded itself (written in place); a write that the
    system refuses (full disk, file-size limit, read-only folder) is one error naming
    ``path``.
    """
    final, in_place = output_target(path)
    if in_place:
        try:
            yield final
        except OSError as err:
            if err.errno in WRITE_ERRNOS or err.errno is None:
                raise write_error(path, err) from None
            raise
        return
    tmp = claim_temp(final, suffix or final.suffix, path)
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as err:
        if err.errno in WRITE_ERRNOS:
            raise write_error(path, err) from None
        raise
    except RuntimeError as err:   # HDF5's way of saying the disk or the size limit is full
        refused = refused_write(err)
        if refused is not None:
            raise write_error(path, refused) from None
        raise
    finally:
        release_temp(tmp)
    remove_stale_temps(final)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """``open(path, mode)`` for an output that appears whole or not at all (:func:`atomic_path`:
    a registered temporary file beside it, removed on any signal, renamed onto it when complete)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes (hex), read in blocks: memory flat in the file's size."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def refuse_overwriting_inputs(inputs, outputs) -> None:
    """A usage error when an output path is (resolves to) one of the inputs.

    Called by every command before any work, so ``vt-cav acts.h5 -o acts.h5`` never
    turns the activations into CAVs.  ``-`` and empty values are ignored.
    """
    def real(value) -> str | None:
        if value is None or str(value) in ("", STDIO):
            return None
        return os.path.realpath(value)

    seen = {}
    for value in inputs if isinstance(inputs, (list, tuple, set)) else [inputs]:
        if real(value):
            seen[real(value)] = value
    for out in outputs if isinstance(outputs, (list, tuple, set)) else [outputs]:
        target = real(out)
        if target is None:
            continue
        same = seen.get(target)
        if same is None and os.path.exists(target):
            same = next((v for r, v in seen.items() if os.path.exists(r) and os.path.samefile(r, target)), None)
        if same is not None and stat.S_ISREG(os.stat(target).st_mode):
            raise UsageError(f"{out}: the output is also an input ({same}); choose another output path")


@contextlib.contextmanager
def open_text_output(path: str) -> Iterator[IO[str]]:
    """``-`` for standard output, or a file written atomically (a device or FIFO in place)."""
    if path == STDIO:
        if sys.stdout is None or sys.stdout.closed:
            raise VtcavError("<stdout>: standard output is closed (give -o FILE)")
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                yield handle
        except OSError as err:
            if err.errno in WRITE_ERRNOS:
                raise write_error(path, err) from None
            raise


def read_lines(handle: IO[str]) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; text that is not UTF-8 is one clear error.

    >>> import io
    >>> list(read_lines(io.StringIO("\\ufeffa\\n\\n b \\n")))
    [(1, 'a'), (3, 'b')]
    """
    number = 0
    try:
        for number, line in enumerate(handle, start=1):
            # a byte-order mark (a file saved by a Windows editor) is not part of the first record
            line = (line[1:] if number == 1 and line.startswith("\ufeff") else line).strip()
            if line:
                yield number, line
    except UnicodeDecodeError as err:
        name = getattr(handle, "name", "-")
        line, byte = _first_bad_line(name) or (number + 1, err.object[err.start])
        raise VtcavError(f"{display_name(name)}: not UTF-8 text (byte 0x{byte:02x} on line {line}); "
                         f"convert it, e.g. iconv -f latin1 -t utf-8") from None
    except OSError as err:
        raise VtcavError(f"{display_name(getattr(handle, 'name', '-'))}: cannot read ({err.strerror or err})") from None


def _first_bad_line(name) -> tuple[int, int] | None:
    """The first line of a file that is not UTF-8, and its first bad byte (decoding reads
    ahead in blocks, so the reader's own line count can be behind)."""
    if not isinstance(name, str) or not os.path.isfile(name):
        return None
    with contextlib.suppress(OSError), open(name, "rb") as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return number, line[err.start]
    return None
