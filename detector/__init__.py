"""mirrorwatch: find streams that carry copies of other traffic, or records about it."""

__version__ = "0.1.0"
