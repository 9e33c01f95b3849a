"""Text and numbers from the wire, made safe to show.

Whoever can send a packet onto the watched network writes part of every report (an X2/X3 target,
an rpcap device name, a template field).  Terminal control characters are shown escaped
(``\\x1b``) so a packet can never move the cursor or repaint the screen; JSON output escapes the
line separators that some JavaScript and log tools take for newlines; times are clamped to what a
calendar can hold, so a damaged timestamp cannot stop a report.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators, bidirectional overrides
# and isolates (they reorder what a reader sees).  Tab and newline are not kept either: a field
# shown on one line must stay on one line.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# Unix seconds of 0001-01-01 and 9999-12-31T23:59:59: the range a datetime can hold.
TS_MIN = -62135596800.0
TS_MAX = 253402300799.0


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(value: object) -> str:
    """``str(value)`` with every control character written as an escape (``\\x1b``)."""
    return _UNSAFE.sub(_escape, str(value))


def safe_lines(text: str) -> str:
    """Lines of text for a terminal: line breaks kept, every other control character escaped."""
    return "\n".join(safe_text(line) for line in text.split("\n"))


def json_line_safe(text: str) -> str:
    """Serialised JSON with U+2028/U+2029 escaped (``json.dumps`` leaves them raw)."""
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def utc_datetime(ts: float) -> datetime:
    """The UTC time of a Unix timestamp, clamped to the years 1-9999 (NaN is the epoch)."""
    if not math.isfinite(ts):
        ts = TS_MAX if ts == math.inf else TS_MIN if ts == -math.inf else 0.0
    return datetime.fromtimestamp(min(max(ts, TS_MIN), TS_MAX), UTC)
