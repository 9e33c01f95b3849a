"""Report renderers by format name.  Each takes the report and returns the text to write."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the records load when a report is written, not when a command starts
    from detector.findings import Report

Renderer = Callable[["Report"], str]

# format name → "module:function"; modules are imported on use so unused formats cost nothing.
RENDERERS: dict[str, str] = {
    "text": "detector.report.text:render_text",
    "json": "detector.report.jsonout:render_json",
    "jsonl": "detector.report.jsonout:render_jsonl",
    "html": "detector.report.html:render_html",
    "eve": "detector.report.eve:render_eve",
}


def renderer(fmt: str) -> Renderer:
    module, func = RENDERERS[fmt].split(":")
    fn: Renderer = getattr(importlib.import_module(module), func)
    return fn
