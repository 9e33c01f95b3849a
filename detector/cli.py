"""The ``mirrorwatch`` command: a click group; each subcommand lives in detector/commands/.

A subcommand's module is imported only when that subcommand runs: the engine pulls in numpy,
the reports pydantic, and ``mirrorwatch --version`` or ``--help`` should not wait for either.
The command list in ``--help`` shows each module's docstring summary, read from its source.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re

import click

from detector import __version__

BUG_HINT = (
    "this is a bug in mirrorwatch: please report it with the command line and, if you can, "
    "the input (MIRRORWATCH_DEBUG=1 shows the traceback)"
)


# A command module opens with '"""``mirrorwatch NAME``: what it does."""'.
_SUMMARY = re.compile(r'\A"""``mirrorwatch [\w-]+``: ([^\n]*?)(?:"""|\n)')


def command_names() -> list[str]:
    """Subcommands: one per module of detector/commands/, named as the module."""
    import detector.commands as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))


def command_summary(name: str) -> str:
    """The summary line of a subcommand's module docstring, without importing the module."""
    spec = importlib.util.find_spec(f"detector.commands.{name}")
    try:
        with open(spec.origin if spec and spec.origin else "", encoding="utf-8") as f:
            m = _SUMMARY.match(f.read(400))
    except OSError:
        return ""
    return "" if m is None else m.group(1)[:1].upper() + m.group(1)[1:]


class _Main(click.Group):
    """Subcommands loaded on use.  A fault of the program ends any command with one line and
    exit status 2, never with a traceback and the exit status of "found something"."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return command_names()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in command_names():
            return None
        module = importlib.import_module(f"detector.commands.{cmd_name}")
        command = getattr(module, "COMMAND", None)
        return command if isinstance(command, click.Command) else None

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
