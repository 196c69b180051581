"""Run a vt-* command inside the test process, as a user's shell would see it run.

Starting a fresh Python and torch costs seconds a command; most tests run a command to
check what it writes and says, not how a process starts. :func:`run_cmd` calls the tool's
console-script entry point (``[project.scripts]`` in pyproject.toml) with ``argv`` in this
interpreter and gives back what ``subprocess.run`` would: the exit status, and stdout and
stderr as the bytes written to file descriptors 1 and 2 (Python's and C libraries' writes
alike), decoded as ``text=True`` decodes them. Standard input is the ``input`` given, or
empty (as ``< /dev/null``).

What a process would not share with its parent is isolated, set up as a fresh interpreter
has it and put back afterwards: ``sys.argv``, the standard streams and file descriptors
0-2, the working directory, the environment (and ``PYTHONPATH`` on ``sys.path``), warnings
filters, signal handlers, exception hooks, logging handlers' streams, torch's global seed,
grad mode and thread count, numpy's and random's global state, matplotlib's rcParams and
figures, and the frame's own per-run state (quiet flag, program name, temporaries to remove,
a requested hard exit). ``os._exit`` inside the command ends the command, not the tests.

Keep real processes (``conftest.run_cli``, ``subprocess``) where the process is what is
tested: signals, exit by a signal, import cost and start-up, closed or odd standard
streams, resource limits, the fault corpus, SLURM, the browser, and commands run verbatim
through a shell.

Not isolated (a process would start without them): modules imported by an earlier command
stay imported, so import-time side effects happen once per test session; threads a command
leaves running keep running.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
# The seed torch's default generator starts from in a fresh interpreter.
TORCH_DEFAULT_SEED = 67280421310721

__all__ = ["CommandResult", "run_cmd", "entry_point"]


class CommandResult(subprocess.CompletedProcess):
    """``subprocess.CompletedProcess`` plus the raw bytes of both streams."""

    stdout_bytes: bytes
    stderr_bytes: bytes


class _HardExit(BaseException):
    """``os._exit(code)`` called by the command."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


# --------------------------------------------------------------------------- finding the tool
def _scripts() -> dict[str, str]:
    """Console scripts of this checkout: name -> ``module:function`` (pyproject.toml, so a
    command added in the tree is found without reinstalling the package)."""
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as handle:
        return dict(tomllib.load(handle)["project"]["scripts"])


def entry_point(tool: str) -> Callable[[], object]:
    """The function the ``tool`` console script calls."""
    scripts = _scripts()
    if tool not in scripts:
        raise KeyError(f"{tool}: not a console script of this project (known: {', '.join(sorted(scripts))})")
    module, _, function = scripts[tool].partition(":")
    target = importlib.import_module(module)
    for part in function.split("."):
        target = getattr(target, part)
    return target


# --------------------------------------------------------------------------- exit status
def _exit_status(code: object, stderr) -> int:
    """The status a process ending with ``SystemExit(code)`` has (as Py_Exit computes it)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=stderr)          # sys.exit("message"): printed, status 1
    return 1


def _decode(data: bytes) -> str:
    """As ``subprocess.run(..., text=True)`` decodes a stream (universal newlines)."""
    text = data.decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- isolation
_DEFAULT_FILTERS = [("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, None),
                    ("ignore", PendingDeprecationWarning, None), ("ignore", ImportWarning, None),
                    ("ignore", ResourceWarning, None)]


@contextlib.contextmanager
def _fresh_warnings():
    """The warnings filters a fresh interpreter has (plus PYTHONWARNINGS), printing to stderr."""
    saved = warnings.filters[:], warnings.showwarning, warnings.formatwarning
    try:
        # (a plain-text module, as the interpreter's own default filter has: matched exactly)
        warnings.filters[:] = [(action, None, category, module, 0) for action, category, module in _DEFAULT_FILTERS]
        for option in filter(None, os.environ.get("PYTHONWARNINGS", "").split(",")):
            with contextlib.suppress(Exception):
                warnings._setoption(option)                    # noqa: SLF001 (as -W does)
        warnings.showwarning = warnings._showwarning_orig      # noqa: SLF001
        warnings.formatwarning = warnings._formatwarning_orig  # noqa: SLF001
        warnings._filters_mutated()                            # noqa: SLF001
        yield
    finally:
        warnings.filters[:], warnings.showwarning, warnings.formatwarning = saved
        warnings._filters_mutated()                            # noqa: SLF001


@contextlib.contextmanager
def _signals():
    saved = {}
    for signum in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            saved[signum] = signal.getsignal(signum)
    hooks = sys.excepthook, sys.unraisablehook
    typer_hook = _typer_hook()
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                with contextlib.suppress(ValueError, OSError, RuntimeError, TypeError):
                    signal.signal(signum, handler)
        sys.excepthook, sys.unraisablehook = hooks
        if typer_hook is not None:
            import typer.main

            typer.main._original_except_hook = typer_hook      # noqa: SLF001


def _typer_hook():
    module = sys.modules.get("typer.main")
    return getattr(module, "_original_except_hook", None) if module else None


@contextlib.contextmanager
def _environment(env: dict | None, cwd):
    saved_env, saved_cwd, saved_path, saved_argv = dict(os.environ), os.getcwd(), sys.path[:], sys.argv[:]
    try:
        if env:
            for key, value in env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = str(value)
        # PYTHONPATH as a new interpreter would read it: its folders before the rest.
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
        sys.path[:0] = extra
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:], sys.argv[:] = saved_path, saved_argv
        for key in set(os.environ) - set(saved_env):
            del os.environ[key]
        for key, value in saved_env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def _random_state():
    """torch starts from its default seed, as in a fresh interpreter; every generator the
    test was using is put back afterwards."""
    python_state = random.getstate()
    numpy = sys.modules.get("numpy")
    numpy_state = numpy.random.get_state() if numpy else None
    # ultralytics sets numpy's print options when it is first imported (by vt-detect here)
    print_options = numpy.get_printoptions() if numpy else None
    torch = sys.modules.get("torch")
    if torch is not None:
        torch_state, grad, threads = torch.random.get_rng_state(), torch.is_grad_enabled(), torch.get_num_threads()
        torch.manual_seed(TORCH_DEFAULT_SEED)
    try:
        yield
    finally:
        random.setstate(python_state)
        if numpy is not None:
            numpy.random.set_state(numpy_state)
            numpy.set_printoptions(**print_options)
        if torch is not None:
            torch.random.set_rng_state(torch_state)
            torch.set_grad_enabled(grad)
            torch.set_num_threads(threads)


@contextlib.contextmanager
def _matplotlib():
    matplotlib = sys.modules.get("matplotlib")
    saved = dict(matplotlib.rcParams) if matplotlib else None
    pyplot = sys.modules.get("matplotlib.pyplot")
    figures = set(pyplot.get_fignums()) if pyplot else set()
    try:
        yield
    finally:
        matplotlib = sys.modules.get("matplotlib")
        if matplotlib is not None:
            reference = saved if saved is not None else dict(matplotlib.rcParamsOrig)
            changed = {k: v for k, v in reference.items()
                       if k not in ("backend", "backend_fallback") and matplotlib.rcParams.get(k) != v}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for key, value in changed.items():
                    dict.__setitem__(matplotlib.rcParams, key, value)
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            for number in set(pyplot.get_fignums()) - figures:
                pyplot.close(number)


@contextlib.contextmanager
def _logging(out, err):
    """Handlers that write to this process's stdout or stderr write to the command's."""
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    saved = [(lg, lg.level, lg.handlers[:], lg.propagate, lg.disabled) for lg in loggers]
    outs = {id(s) for s in (sys.stdout, sys.__stdout__) if s is not None}
    errs = {id(s) for s in (sys.stderr, sys.__stderr__) if s is not None}
    # Every stream handler's stream is put back afterwards (a command may re-point handlers,
    # as vt-detect does ultralytics': pytest's own capture handlers must not follow).
    streams = [(handler, handler.stream) for lg in loggers for handler in lg.handlers
               if isinstance(handler, logging.StreamHandler)]
    for handler, stream in streams:
        if id(stream) in outs | errs:
            handler.stream = out if id(stream) in outs else err
    disable = logging.root.manager.disable
    try:
        yield
    finally:
        for handler, stream in streams:
            handler.stream = stream
        for lg, level, handlers, propagate, disabled in saved:
            lg.level, lg.handlers[:], lg.propagate, lg.disabled = level, handlers, propagate, disabled
        logging.disable(disable)


@contextlib.contextmanager
def _frame_state():
    """The per-run globals of the command frame start as in a fresh process."""
    from vtcav_common.core import files, messages
    from vtcav_common.cli import frame

    saved = (messages._quiet, messages._prog, frame._prog, files._hard_exit, dict(files._live_temps))
    messages._quiet, messages._prog, frame._prog, files._hard_exit = False, "vtcav", "vtcav", False
    files._live_temps.clear()
    try:
        yield
    finally:
        messages.stop_progress()
        messages._quiet, messages._prog, frame._prog, files._hard_exit, live = saved
        files._live_temps.clear()
        files._live_temps.update(live)


@contextlib.contextmanager
def _no_hard_exit():
    real = os._exit

    def hard_exit(code):
        raise _HardExit(code)

    os._exit = hard_exit
    try:
        yield
    finally:
        os._exit = real


# --------------------------------------------------------------------------- the streams
class _Streams:
    """File descriptors 0-2 pointed at temporary files, and sys.std* objects over them.

    The text objects are kept for the whole session: a logging handler made during one
    command (ultralytics' makes one at import) keeps writing to descriptor 1 or 2, which
    is the next command's capture, or pytest's between commands."""

    out: io.TextIOWrapper | None = None
    err: io.TextIOWrapper | None = None

    @classmethod
    def text_objects(cls):
        if cls.out is None or cls.out.closed:
            cls.out = open(1, "w", encoding="utf-8", errors="strict", closefd=False)
        if cls.err is None or cls.err.closed:
            cls.err = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
        return cls.out, cls.err


def _flush(*streams) -> None:
    for stream in streams:
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


@contextlib.contextmanager
def _captured(stdin: bytes):
    """Yield (stdin, stdout, stderr, read): the command's streams, and a function that
    returns what it wrote to descriptors 1 and 2."""
    _flush(sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    saved_objects = sys.stdin, sys.stdout, sys.stderr
    saved_fds = [os.dup(fd) for fd in (0, 1, 2)]
    files = [tempfile.TemporaryFile() for _ in range(3)]
    files[0].write(stdin)
    files[0].seek(0)
    out, err = _Streams.text_objects()
    stdin_object = open(0, "r", encoding="utf-8", errors="strict", closefd=False)
    try:
        for fd, handle in zip((0, 1, 2), files):
            os.dup2(handle.fileno(), fd)
        sys.stdin, sys.stdout, sys.stderr = stdin_object, out, err

        def read() -> tuple[bytes, bytes]:
            _flush(out, err, sys.__stdout__, sys.__stderr__)
            data = []
            for handle in files[1:]:
                handle.seek(0)
                data.append(handle.read())
            return data[0], data[1]

        yield stdin_object, out, err, read
    finally:
        _flush(out, err, sys.__stdout__, sys.__stderr__)
        with contextlib.suppress(Exception):
            stdin_object.close()
        for fd, saved in zip((0, 1, 2), saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        for handle in files:
            handle.close()
        sys.stdin, sys.stdout, sys.stderr = saved_objects


# --------------------------------------------------------------------------- the runner
def run_cmd(*args, input: str | bytes | None = None, check: bool = False, cwd: str | os.PathLike | None = None,
            env: dict | None = None, text: bool = True) -> CommandResult:
    """Run ``args`` (``"vt-x", arg, ...``) as the console script would, in this process.

    ``input``: standard input (str or bytes; empty when None). ``cwd``: the working
    directory. ``env``: variables to set (None as a value removes one) on top of this
    process's environment. ``check``: raise AssertionError, with stderr, on a non-zero
    exit. Returns a ``subprocess.CompletedProcess`` (``returncode``, ``stdout``, ``stderr``:
    str when ``text``, else bytes) with ``stdout_bytes`` and ``stderr_bytes`` as well.
    """
    tool, rest = str(args[0]), [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args[1:]]
    data = input.encode("utf-8") if isinstance(input, str) else (input or b"")
    with contextlib.ExitStack() as stack:
        stack.enter_context(_environment(env, cwd))
        main = entry_point(tool)
        stack.enter_context(_signals())
        stack.enter_context(_random_state())
        stack.enter_context(_matplotlib())
        stack.enter_context(_frame_state())
        _, out, err, read = stack.enter_context(_captured(data))
        stack.enter_context(_logging(out, err))
        stack.enter_context(_fresh_warnings())
        stack.enter_context(_no_hard_exit())
        sys.argv[:] = [tool, *rest]
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = _exit_status(exit_.code, err)
        except _HardExit as exit_:
            code = exit_.code & 0xFF
        except KeyboardInterrupt:
            traceback.print_exc(file=err)
            code = -signal.SIGINT                       # the interpreter kills itself with SIGINT
        except BaseException:                           # an uncaught exception: traceback, status 1
            traceback.print_exc(file=err)
            code = 1
        stdout, stderr = read()
    result = CommandResult([tool, *rest], code, _decode(stdout) if text else stdout,
                           _decode(stderr) if text else stderr)
    result.stdout_bytes, result.stderr_bytes = stdout, stderr
    if check and code != 0:
        raise AssertionError(f"{tool} {' '.join(rest)} exited {code}:\n{_decode(stderr)}")
    return result

