"""The ``mirrorwatch`` command: a click group; each subcommand lives in detector/commands/.

A subcommand's module is imported only when that subcommand runs: the engine pulls in numpy,
the reports pydantic, and ``mirrorwatch --version`` or ``--help`` should not wait for either.
The command list in ``--help`` shows each module's docstring summary, read from its source.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import importlib
import importlib.util
import os
import pkgutil
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import click

from detector import __version__

# numpy's OpenBLAS starts a thread per core when numpy is imported, and they spin for a while:
# 0.1 CPU-second per process for nothing, as the engine makes no BLAS call worth sharing.  A
# value the user set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

BUG_HINT = (
    "this is a bug in mirrorwatch: please report it with the command line and, if you can, "
    "the input (MIRRORWATCH_DEBUG=1 shows the traceback)"
)


# A command module opens with '"""``mirrorwatch NAME``: what it does.'; other modules of
# detector/commands/ are helpers.
_SUMMARY = re.compile(r'\A"""``mirrorwatch ([\w-]+)``: ([^\n]*?)(?:"""|\n)')


@functools.cache
def _commands() -> dict[str, str]:
    """Subcommand name → summary line, read from the module sources without importing them."""
    import detector.commands as pkg

    found = {}
    for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        spec = importlib.util.find_spec(f"detector.commands.{m.name}")
        try:
            with open(spec.origin if spec and spec.origin else "", encoding="utf-8") as f:
                head = _SUMMARY.match(f.read(400))
        except OSError:
            continue
        if head and head.group(1) == m.name:
            found[m.name] = head.group(2)[:1].upper() + head.group(2)[1:]
    return found


def command_names() -> list[str]:
    """Subcommands: the modules of detector/commands/ that say which command they are."""
    return list(_commands())


def command_summary(name: str) -> str:
    return _commands().get(name, "")


class _Main(click.Group):
    """Subcommands loaded on use.  A fault of the program ends any command with one line and
    exit status 2, never with a traceback and the exit status of "found something"."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return command_names()

    # Commands that end when their output is written: they leave without freeing objects.
    LEAVE_FAST = frozenset({"scan", "report", "baseline", "schema"})
    leave_fast = False
    as_program = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in command_names():
            return None
        module = importlib.import_module(f"detector.commands.{cmd_name}")
        command = getattr(module, "COMMAND", None)
        if not isinstance(command, click.Command):
            return None
        self.leave_fast = cmd_name in self.LEAVE_FAST
        if self.as_program:
            # What the imports made lives until exit: later collections need not walk it again.
            gc.freeze()
            from detector.limits import steady_heap

            steady_heap()
        return command

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        """Run as the program (arguments from the command line): a batch command that ends
        leaves without tearing down its modules one object at a time, a tenth of a second of
        CPU for a scan's numpy, pydantic and scapy, once everything Python's own exit would
        do has been done.  Called with arguments (tests, embedding), it returns as usual."""
        self.as_program = args is None and kwargs.get("standalone_mode", True)
        try:
            return super().main(args, *rest, **kwargs)
        except SystemExit as exc:
            if self.as_program and self.leave_fast:
                _leave(exc.code)
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, command_summary(name)) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except Exception as exc:
            if os.environ.get("MIRRORWATCH_DEBUG"):
                raise
            from detector.parts import ScanFault
            from detector.report.safe import safe_text

            what = str(exc) if isinstance(exc, ScanFault) else f"{type(exc).__name__}: {exc}"
            click.echo(f"mirrorwatch: internal error: {safe_text(what)}; {BUG_HINT}", err=True)
            ctx.exit(2)


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Around the imports a command makes before its work (the engine, numpy): run as the
    program, the collector rests while they load, then their objects are set aside for good
    (they live until exit), so no later collection walks them, nor a forked worker's, which
    would also copy the pages it touched.  Walking them as they loaded took milliseconds before
    the first packet was read.  Called with arguments (tests, embedding), nothing changes."""
    if not main.as_program:
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _leave(code: object) -> None:
    """Exit now with ``code``, after what Python's exit does that anyone could see: output
    flushed, exit handlers run (temporary files, pools, logging).  Returns, for the usual exit,
    if a thread is still at work or the output cannot be flushed (its error is then shown)."""
    if code is not None and not isinstance(code, int):
        return
    main_thread = threading.main_thread()
    if any(t is not main_thread and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code or 0)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mirrorwatch")
def main() -> None:
    """Find streams that carry copies of your traffic (mirrors, lawful-intercept exports) or
    records about it (NetFlow, IPFIX, sFlow), in captures or live on a span port.

    \b
    Shell completion (bash): eval "$(_MIRRORWATCH_COMPLETE=bash_source mirrorwatch)"
    """


if __name__ == "__main__":
    main()
