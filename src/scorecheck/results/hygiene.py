"""What hostile model output and user input must not do to a record or a report.

- Header values are redacted in every record unless the header is on a short allowlist (:data:`SAFE_HEADERS`): a
  denylist of "secret-looking" names let ``X-Credential`` through in clear.
- Bidi control characters (which reorder text invisibly, e.g. U+202E RIGHT-TO-LEFT OVERRIDE) and other invisible
  control characters (NUL, C0/C1 controls other than tab and newline) are shown as visible ``⟦U+202E⟧`` markers in
  the HTML report.
- A CSV text cell that starts with ``=``, ``+``, ``-``, ``@``, tab or CR is prefixed with ``'`` as OWASP's CSV
  injection guidance recommends, so a spreadsheet shows it as text instead of evaluating a formula; numbers are left
  as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SAFE_HEADERS = frozenset({"content-type", "user-agent", "accept", "accept-encoding", "accept-language"})
"""Headers whose values are recorded as given; every other header's value is written as ``***``."""

REDACTED = "***"


def is_safe_header(name: str) -> bool:
    return name.strip().lower() in SAFE_HEADERS


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v if is_safe_header(k) else REDACTED for k, v in headers.items()}


BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE = re.compile(f"[{BIDI}\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]")


def visible_controls(s: str) -> str:
    """``s`` with each bidi or invisible control character replaced by a visible ``⟦U+XXXX⟧`` marker."""
    return _INVISIBLE.sub(lambda m: f"⟦U+{ord(m.group()):04X}⟧", s)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v: Any) -> Any:
    """A CSV cell that no spreadsheet evaluates: text starting with a formula character gets a leading ``'``
    (OWASP, CSV Injection); numbers (and text that is a plain number, like ``-0.25``) are left untouched."""
    if not isinstance(v, str) or not v.startswith(FORMULA_START):
        return v
    try:
        float(v)
        return v
    except ValueError:
        return "'" + v
