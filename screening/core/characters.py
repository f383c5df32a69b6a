"""Which characters a typed text may hold: none that hides, reorders or controls what others read.

Plain Python, used by the rule engine (text answers), the sharing form (name, contact) and the
staff notes. Refused: control characters (Unicode category Cc; a multi-line text keeps tab and its
line breaks), lone surrogates (Cs), and format characters (Cf) such as the bidi overrides that
make a CSV cell or a page read differently from what is stored, except the two joiners that
Persian, Indic scripts and emoji sequences need.
"""
from __future__ import annotations

import unicodedata

JOINERS = frozenset("\u200c\u200d")          # zero-width non-joiner and joiner
MULTILINE_CONTROLS = frozenset("\t\n\r")      # a textarea sends its line breaks as CR LF


def forbidden_characters(text: str, *, multiline: bool = False) -> bool:
    """Whether `text` holds a character it may not: see the module docstring."""
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc" and not (multiline and ch in MULTILINE_CONTROLS):
            return True
        if category == "Cs" or (category == "Cf" and ch not in JOINERS):
            return True
        if category in ("Zl", "Zp") and not multiline:   # line and paragraph separators
            return True
    return False
