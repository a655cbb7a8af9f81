"""Toneless pinyin keys for homophone typos (高血呀 for 高血压), exact and as an input method's fuzzy pinyin reads them."""

from __future__ import annotations

import re


def is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


class Pinyin:
    """Toneless pinyin keys, one reading per character (a homophone typo keeps the key)."""

    def __init__(self):
        from pypinyin import lazy_pinyin

        self._lazy = lazy_pinyin
        self._chars: dict[str, str] = {}

    def key(self, text: str) -> str:
        out = []
        for ch in text:
            py = self._chars.get(ch)
            if py is None:
                py = self._chars[ch] = self._lazy(ch)[0] if is_cjk(ch) else ch
            out.append(py)
        return " ".join(out)

    @staticmethod
    def fuzzy(key: str) -> str:
        """The key as an input method's fuzzy pinyin reads it (模糊音: zh/z, ch/c, sh/s, l/n, ing/in, eng/en,
        ang/an): 库兴 is typed for 库欣."""
        return " ".join(_FUZZY_FINAL.sub(r"\1", _FUZZY_INITIAL.sub(lambda m: _FUZZY_TO[m.group(0)], syl))
                        for syl in key.split(" "))


_FUZZY_INITIAL = re.compile(r"^(zh|ch|sh|l)")
_FUZZY_TO = {"zh": "z", "ch": "c", "sh": "s", "l": "n"}
_FUZZY_FINAL = re.compile(r"(in|en|an)g$")
