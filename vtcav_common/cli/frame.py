"""The command frame shared by every ``vt-*`` tool.

Each tool in ``tools/`` declares a typer app with :func:`make_app` and runs it with
:func:`entry`.  The frame gives all of them the same behaviour (after csvkit's ``cli.py``):

- a :class:`~vtcav_common.core.errors.VtcavError` prints ``vt-x: error: message`` on one
  line and exits 1 (2 for usage errors), no traceback unless ``VTCAV_DEBUG=1``;
- SIGPIPE is restored so ``vt-detect ... | head`` ends quietly;
- ``--version`` prints the package version;
- Python warnings (scikit-learn's ConvergenceWarning, torch's) are counted while the
  command runs and printed once per distinct message at the end, with the count;
- old option spellings stay accepted but out of the help (:mod:`vtcav_common.cli.options`).

Subcommands are registered one way: ``@app.command(...)`` in the tool's module, or a function
``register(app)`` in a module of their own (``tools/vt_concepts_twins.py``,
``tools/vt_detect_import.py``) that calls ``app.command(name=...)`` and that the tool's module
calls. On a tool of several commands (``make_app(..., single=False)``: vt-concepts, vt-ace) they
join the others; on a tool that is one command (vt-detect) its first command stays the tool
itself and each one registered after it is a named subcommand (``vt-detect import``), run as a
program of its own (:class:`MainWithSubcommands`).

Only the front ends (``tools/``) and this module and :mod:`vtcav_common.cli.options` import
typer; the library below them does not.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import warnings
from typing import Callable

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from .. import __version__
from ..core import messages
from ..core.errors import UsageError, VtcavError  # noqa: F401  (re-exported for tools)
from ..core.files import one_line


class _AliasedOption(TyperOption):
    """An option that also accepts old spellings, parsed but not shown in --help."""

    hidden_aliases: tuple[str, ...] = ()

    def add_to_parser(self, parser, ctx) -> None:
        shown = self.opts
        self.opts = [*shown, *self.hidden_aliases]
        try:
            super().add_to_parser(parser, ctx)
        finally:
            self.opts = shown


class VtCommand(TyperCommand):
    """A typer command whose options may carry ``hidden_aliases`` (set by :mod:`options`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        function = inspect.unwrap(self.callback) if self.callback else None
        if function is None:
            return
        declared = {name: getattr(p.default, "hidden_aliases", ())
                    for name, p in inspect.signature(function).parameters.items()}
        for param in self.params:
            aliases = declared.get(param.name or "")
            if aliases and isinstance(param, TyperOption):
                param.__class__ = _AliasedOption
                param.hidden_aliases = tuple(aliases)

    def invoke(self, ctx):
        # a positional argument is read (vt-ace faithfulness's RANKING), except vt-synth's OUT_DIR
        arguments = {p.name for p in self.params if not isinstance(p, TyperOption) and p.name != "out_dir"}
        _refuse_outputs_that_are_inputs(ctx.params, arguments)
        return super().invoke(ctx)


class MainWithSubcommands(TyperGroup):
    """A tool that is one command and has named subcommands besides: ``vt-detect [OPTIONS]
    INPUT...`` and ``vt-detect import ...``.

    The first command registered on the app is the tool itself; a first word that names
    another command runs that one as the program ``vt-detect import`` (its usage line, its
    ``--help``, its errors' prefix), and anything else is the tool's own arguments (a video
    named ``detect`` is an input, not a command). ``commands`` holds the named subcommands
    only; ``main_command`` is the tool's own command, whose help the tool's is."""

    def __init__(self, *args, commands=None, **kwargs):
        commands = dict(commands or {})
        self.main_command = commands.pop(next(iter(commands)))
        super().__init__(*args, commands=commands, **kwargs)
        self.help, self.epilog = self.main_command.help, self.main_command.epilog

    def main(self, args=None, prog_name=None, **extra):
        args = list(sys.argv[1:] if args is None else args)
        prog_name = prog_name or os.path.basename(sys.argv[0])
        extra = {**self.context_settings, **extra}     # -h and --help, as the tool's own
        if args and args[0] in self.commands:
            name, args = args[0], args[1:]
            prog_name = f"{prog_name} {name}"
            _name_program(prog_name)
            return self.commands[name].main(args, prog_name, **extra)
        return self.main_command.main(args, prog_name, **extra)


# Parameters that name what a command writes; every other path parameter is read.
OUTPUT_PARAMS = ("output", "out", "ranking", "table", "plot", "motion_plot", "markdown", "pictures", "sheets",
                 "out_dir", "work_dir")


def _refuse_outputs_that_are_inputs(params: dict, arguments: set = frozenset()) -> None:
    """Before any work: ``vt-cav acts.h5 -o acts.h5`` is a usage error, not lost activations."""
    from ..core.files import note_input, refuse_overwriting_inputs

    def paths(value):
        values = value if isinstance(value, (list, tuple)) else [value]
        return [str(v) for v in values if isinstance(v, (str, os.PathLike)) and str(v) not in ("", "-")]

    written = [name for name in OUTPUT_PARAMS if name not in arguments]
    outputs = [p for name in written for p in paths(params.get(name))]
    inputs = [p for name, value in params.items() if name not in written for p in paths(value)]
    for path in inputs:   # every later write (pictures, twins, sidecars) is checked against these
        note_input(path)
    if outputs:
        refuse_overwriting_inputs([p for p in inputs if os.path.isfile(p)], outputs)


def make_app(name: str, help: str, epilog: str = "", single: bool = True) -> typer.Typer:
    """A typer app with the conventions of every vtcav tool: ``single``, one command (and
    perhaps named subcommands registered after it), else a group of commands."""
    app = typer.Typer(
        name=name,
        cls=MainWithSubcommands if single else None,
        help=help,
        epilog=epilog,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        no_args_is_help=not single,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    _use_command_class(app)
    if not single:
        @app.callback()
        def _group(version: bool = typer.Option(False, "--version", callback=_version_callback,
                                                is_eager=True, help="Print the version and exit.")):
            pass
    else:
        _give_command_the_app_help(app, help, epilog)
    return app


def _use_command_class(app: typer.Typer) -> None:
    """Every command of ``app`` is a :class:`VtCommand` (hidden aliases of old spellings)."""
    command = app.command

    def command_with_class(*args, **kwargs):
        if kwargs.get("cls") is None:
            kwargs["cls"] = VtCommand
        return command(*args, **kwargs)

    app.command = command_with_class


def _give_command_the_app_help(app: typer.Typer, help: str, epilog: str) -> None:
    """A single-command typer app shows its command's help, not the app's: lend the
    command the app's text and examples unless it brings its own."""
    command = app.command

    def command_with_app_help(*args, **kwargs):
        def register(function):
            if kwargs.get("help") is None and not function.__doc__:
                kwargs["help"] = help
            if kwargs.get("epilog") is None and epilog:
                kwargs["epilog"] = epilog
            return command(*args, **kwargs)(function)
        return register

    app.command = command_with_app_help


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vtcav {__version__}")
        raise typer.Exit(0)


def version_option() -> bool:
    """The ``--version`` option, for single-command tools."""
    return typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                        help="Print the version and exit.")


def run(app: typer.Typer, prog_name: str) -> None:
    """Run a tool's app with the shared error handling, signals and exit codes.

    Signal handlers and hooks are put back afterwards, for callers that run a tool in
    their own process (tests)."""
    from ..core import files

    names = [name for name in ("SIGPIPE", "SIGTERM", "SIGINT", "SIGXFSZ") if hasattr(signal, name)]
    handlers = {name: signal.getsignal(getattr(signal, name)) for name in names}
    hooks = sys.excepthook, sys.unraisablehook
    files.begin_run()
    try:
        _run(app, prog_name)
    finally:
        files.end_run()
        for name, handler in handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(getattr(signal, name), handler)
        sys.excepthook, sys.unraisablehook = hooks


def _name_program(prog_name: str) -> None:
    """The name errors, messages and signals' notes start with (``vt-detect import`` once
    :class:`MainWithSubcommands` has chosen that subcommand)."""
    global _prog
    _prog = prog_name
    messages.set_prog(prog_name)


def _run(app: typer.Typer, prog_name: str) -> None:
    _name_program(prog_name)
    _install_signal_handlers()
    _quiet_unraisable()
    counts: dict[tuple[str, str], int] = {}
    try:
        with _counting_warnings(counts):
            # Not standalone: typer would print a usage error in a box of several lines; it
            # becomes one line below, like every other error. An explicit exit comes back as
            # its code (typer.Exit, --help, Ctrl-C as 130).
            code = app(prog_name=prog_name, standalone_mode=False)
        # Exit as standalone typer did, also on success: callers that run a tool in their own
        # process (tests, scripts) see SystemExit either way.
        raise SystemExit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
    except CLICK_ERROR as err:                        # an unknown option, a missing or bad argument
        _print_warning_summary(counts)
        print(f"{_prog}: error: {one_line(_usage_line(err))} (see {_prog} --help)", file=sys.stderr)
        _exit(err.exit_code)
    except typer.Abort:                               # end of input at a prompt
        print(f"{_prog}: aborted", file=sys.stderr)
        _exit(1)
    except VtcavError as err:
        if os.environ.get("VTCAV_DEBUG"):
            raise
        _print_warning_summary(counts)
        print(f"{_prog}: error: {one_line(str(err))}", file=sys.stderr)
        _exit(err.exit_code)
    except KeyboardInterrupt:   # raised by code, not by Ctrl-C (that is _stop's)
        _print_warning_summary(counts)
        _remove_live_temps()
        print(f"{_prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        # The system refused a read or write the command could not foresee (a full disk,
        # a file-size limit, an unreadable file): one line, not a traceback.
        if os.environ.get("VTCAV_DEBUG"):
            raise
        _print_warning_summary(counts)
        _remove_live_temps()
        print(f"{_prog}: error: {one_line(_os_error_line(err))}", file=sys.stderr)
        _exit(1)
    except UnicodeDecodeError as err:
        if os.environ.get("VTCAV_DEBUG"):
            raise
        _print_warning_summary(counts)
        from ..core.files import hdf5_inputs   # (text read from a damaged HDF5 file, when one is open)

        where = " or ".join(hdf5_inputs()) or "an input"
        print(f"{_prog}: error: {one_line(where)}: text that is not UTF-8 ({err.reason} at byte {err.start})",
              file=sys.stderr)
        sys.exit(1)
    except (MemoryError, RecursionError, ArithmeticError, LookupError, ValueError, TypeError, AttributeError,
            RuntimeError, AssertionError) as err:
        # Last resort: input that got past every check. One line (and no half-written output),
        # never a traceback; VTCAV_DEBUG=1 shows where. The fuzz tests treat this as a failure.
        if os.environ.get("VTCAV_DEBUG"):
            raise
        _print_warning_summary(counts)
        _remove_live_temps()
        if "synchronously" in str(err) and isinstance(err, (RuntimeError, KeyError, ValueError)):
            # HDF5 met damaged metadata the validation on open did not touch (h5py raises
            # these as RuntimeError/KeyError without the file): name the HDF5 inputs
            from ..core.files import hdf5_inputs

            if hdf5_inputs():
                print(f"{_prog}: error: {one_line(_hdf5_damage_line(err, hdf5_inputs()))}", file=sys.stderr)
                _exit(1)
        first = (str(err).strip().splitlines() or [""])[0][:200]
        print(f"{_prog}: error: {one_line(f'internal error ({type(err).__name__}: {first})')}; "
              f"VTCAV_DEBUG=1 shows where; please report it", file=sys.stderr)
        _exit(1)
    except SystemExit as err:
        _print_warning_summary(counts)
        if err.code == 130:  # typer turns Ctrl-C into a silent exit 130
            _remove_live_temps()
            print(f"{_prog}: interrupted", file=sys.stderr)
        raise


# click's base of usage and parameter errors (typer vendors click in recent versions): found
# through the public typer.BadParameter, whichever click typer brings.
CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _usage_line(err) -> str:
    """click's message on one line, without its guesses at what was meant (``--nope`` is not
    a misspelt ``--model``)."""
    text = " ".join(err.format_message().split())
    return text.split(" (Possible options:")[0].split(" Did you mean")[0].rstrip(".")


_prog = "vtcav"


def _stop(signum, frame) -> None:
    """SIGTERM or Ctrl-C: remove this run's temporary files (and what a multi-file command
    made so far), say so, and exit at once (143 or 130).

    Not by raising an exception to unwind: raised from a signal handler, it can land in a
    finalizer or an import, where Python swallows it and the run would go on.  Everything
    to remove is registered (files.remove_on_abort); earlier outputs are never touched.
    """
    _remove_live_temps()
    word, code = ("terminated", 143) if signum == signal.SIGTERM else ("interrupted", 130)
    with contextlib.suppress(OSError):
        os.write(2, f"{_prog}: {word}\n".encode())
    os._exit(code)


def _install_signal_handlers() -> None:
    """SIGPIPE ends ``| head`` quietly; SIGTERM and SIGINT clean up and exit (143, 130); a
    file-size limit (``ulimit -f``) makes the write fail with EFBIG instead of killing us."""
    for name, handler in (("SIGPIPE", signal.SIG_DFL), ("SIGTERM", _stop), ("SIGINT", _stop),
                          ("SIGXFSZ", signal.SIG_IGN)):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            if name == "SIGINT" and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
                continue   # started in the background by a shell: Ctrl-C is not meant for us
            signal.signal(getattr(signal, name), handler)


def _exit(code: int) -> None:
    from ..core.files import hard_exit_requested

    if hard_exit_requested():
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


def _quiet_unraisable() -> None:
    """h5py objects freed after a failed write (full disk, ``ulimit -f``) print "Exception
    ignored in ... dealloc" with a traceback (through sys.excepthook, from Cython); the
    command's own one-line error says what failed.  Other exceptions keep their traceback."""
    if os.environ.get("VTCAV_DEBUG"):
        return
    sys.unraisablehook = lambda unraisable: None

    def excepthook(kind, value, tb, default=sys.__excepthook__):
        frame = tb
        while frame is not None:
            if "h5py/_objects" in frame.tb_frame.f_code.co_filename:
                return
            frame = frame.tb_next
        default(kind, value, tb)

    sys.excepthook = excepthook
    # typer installs its own hook when the app runs, which falls back to the one it saw at import
    import typer.main

    if hasattr(typer.main, "_original_except_hook"):
        typer.main._original_except_hook = excepthook


def _remove_live_temps() -> None:
    from ..core.files import live_temps

    for path in live_temps():
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() else path.unlink()


def _hdf5_damage_line(err: Exception, opened: list[str]) -> str:
    text = str(err).strip("'\"").splitlines()[0][:160]
    return f"{opened[0] if len(opened) == 1 else ' or '.join(opened)}: damaged HDF5 file ({text})"


def _os_error_line(err: OSError) -> str:
    """``FILE: reason`` from an OSError (h5py puts its reason, and the file, in the message:
    ``Unable to create file (file write failed: time = ..., filename = '...', ...
    error message = 'No space left on device', ...)``, over several lines)."""
    import re

    from ..core.files import final_name

    text = str(err)
    told = re.search(r"error message = '([^']+)'", text)
    reason = told.group(1) if told else err.strerror or (text.splitlines()[0] if text else type(err).__name__)
    name = err.filename or getattr(err, "filename2", None)
    if name is None:
        found = re.search(r"filename = '([^']+)'", text)
        name = final_name(found.group(1)) if found else None
    if name is None and re.search(r"read data|filter returned failure|Can't read|inflate|checksum|synchronously",
                                  text):
        # a damaged chunk of an HDF5 input: h5py does not say which file; name those opened
        from ..core.files import hdf5_inputs

        opened = hdf5_inputs()
        if opened:
            name = opened[0] if len(opened) == 1 else " or ".join(opened)
            reason = f"damaged data ({reason})"
    return f"{name}: {reason}" if name else reason


# Warnings Python hides by default stay hidden (they speak to developers, not users).
_HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@contextlib.contextmanager
def _counting_warnings(counts: dict[tuple[str, str], int]):
    """Count each distinct warning instead of printing it where it happens (25-37 identical
    ConvergenceWarnings per vt-cav run would bury the summary)."""
    def count(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, _HIDDEN_WARNINGS) and not os.environ.get("VTCAV_DEBUG"):
            return
        text = str(message).strip().splitlines()[0] if str(message).strip() else ""
        key = (category.__name__, text)
        counts[key] = counts.get(key, 0) + 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = count
        yield


def warning_lines(counts: dict[tuple[str, str], int]) -> list[str]:
    """``warning: ConvergenceWarning x 31: ...``, in the order first seen.

    >>> warning_lines({("ConvergenceWarning", "did not converge"): 31, ("UserWarning", "once"): 1})
    ['warning: ConvergenceWarning x 31: did not converge', 'warning: UserWarning: once']
    """
    return [f"warning: {name}{f' x {n}' if n > 1 else ''}: {text}" for (name, text), n in counts.items()]


def _print_warning_summary(counts: dict[tuple[str, str], int]) -> None:
    messages.stop_progress()  # no progress line after the summary or the error line
    for line in warning_lines(counts):
        print(line, file=sys.stderr, flush=True)
    counts.clear()


def entry(app: typer.Typer, prog_name: str) -> Callable[[], None]:
    """A console-script entry point for ``app``."""
    return lambda: run(app, prog_name)
