"""The ``mirrorwatch`` command: a click group; each subcommand lives in detector/commands/."""

from __future__ import annotations

import importlib
import pkgutil

import click

from detector import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
