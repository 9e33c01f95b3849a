"""Subcommands of ``mirrorwatch``: each module defines ``COMMAND`` (a click command)."""
