"""Which configuration file applies when the command line names none.

Apart from detector/config.py, which validates the file with pydantic: a scan with no
configuration file must not load it.
"""

from __future__ import annotations

import os
from pathlib import Path

# Read when no --config is given: $MIRRORWATCH_CONFIG (set but empty: no file), else this path
# when it exists.
CONFIG_ENV = "MIRRORWATCH_CONFIG"
SYSTEM_CONFIG = "/etc/mirrorwatch/mirrorwatch.toml"


def default_config_path() -> str | None:
    """The config file that applies when the command line names none, or None."""
    env = os.environ.get(CONFIG_ENV)
    if env is not None:
        return env or None
    return SYSTEM_CONFIG if Path(SYSTEM_CONFIG).is_file() else None
