"""Value cleaning on import: markup, whitespace, empty values and exact duplicates, with counts."""

from __future__ import annotations

import re
from collections import Counter

# HTML or BBCode superscripts (<sup>[药典]</sup>, [sup]®[/sup]) with their content, other short HTML tags,
# and bare pharmacopoeia source tags; not bracketed content such as [99mTc] or [单纯疱疹].
_MARKUP = re.compile(r"<sup>.*?</sup>|\[sup\].*?\[/sup\]|<[a-zA-Z/][^<>]{0,39}>|\[药典\]", re.S)
_SPACE = re.compile(r"\s+")


def clean_value(value: str, counts: Counter) -> str:
    """Return the cleaned value ('' when nothing is left); tally what changed in `counts`."""
    out = value
    if "<" in out or "[" in out:
        stripped = _MARKUP.sub("", out)
        if stripped != out:
            counts["markup_removed"] += 1
            out = stripped
    squeezed = _SPACE.sub(" ", out).strip()
    if squeezed != out:
        counts["whitespace_fixed"] += 1
    return squeezed


def clean_values(values: list[str], counts: Counter) -> list[str]:
    """Clean a predicate's values in order, dropping empties and exact duplicates."""
    seen: set[str] = set()
    out: list[str] = []
    for v in values:
        c = clean_value(v, counts)
        if not c:
            counts["empty_dropped"] += 1
        elif c in seen:
            counts["duplicates_dropped"] += 1
        else:
            seen.add(c)
            out.append(c)
    return out


def clean_name(name: str) -> str:
    return _SPACE.sub(" ", name).strip()
