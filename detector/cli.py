"""The ``mirrorwatch`` command: a click group; each subcommand lives in detector/commands/."""

from __future__ import annotations

import importlib
import os
import pkgutil

import click

from detector import __version__

BUG_HINT = (
    "this is a bug in mirrorwatch: please report it with the command line and, if you can, "
    "the input (MIRRORWATCH_DEBUG=1 shows the traceback)"
)


class _Main(click.Group):
    """A fault of the program ends any command with one line and exit status 2, never with a
    traceback and the exit status of "found something"."""

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


def _register() -> None:
    import detector.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"detector.commands.{info.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, click.Command):
            main.add_command(command)


_register()

if __name__ == "__main__":
    main()
