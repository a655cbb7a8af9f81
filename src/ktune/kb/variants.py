"""How one condition's name is written in other ways: the variant key and the modifier words around a name.

The linker's variant tier matches names by `loose_key` (手足口 / 手足口病, 过敏鼻炎 / 过敏性鼻炎, 2型 / II型) and its
modifier tier by `strip_modifiers` (轻度脂肪肝 -> 脂肪肝); `POPULATIONS` leads a population word to that group's own
entry (宝宝腹泻 -> 小儿腹泻). Stage 1 reads `frame_only` to tell a name framed by numbers, sides and modifiers from
one glued to other content. Every function here takes normalized text (ktune.kb.linker.normalize).
"""

from __future__ import annotations

import re

# Suffixes that name the same condition with or without them (手足口 / 手足口病), longest first.
_LOOSE_SUFFIXES = ("综合征", "综合症", "感染", "疾病", "病", "症")
# How a type or stage number is written: 2型 = II型 = Ⅱ型 = 二型.
_NUMERALS = {"ⅳ": "4", "iv": "4", "四": "4", "ⅲ": "3", "iii": "3", "三": "3", "ⅱ": "2", "ii": "2", "二": "2",
             "ⅰ": "1", "i": "1", "一": "1"}
_NUMBERED = re.compile(r"(ⅳ|iv|四|ⅲ|iii|三|ⅱ|ii|二|ⅰ|i|一)(?=型|期|度|级)")
# Who, how severe, when or how often: words people put around a condition that name no other condition.
_MODIFIER_PREFIXES = tuple(sorted(
    """轻度 中度 重度 轻微 严重 轻型 重型 轻症 重症 早期 中期 晚期 初期 末期 急性 慢性 反复 反复发作 经常 长期 顽固
    顽固性 小儿 儿童 宝宝 婴儿 婴幼儿 新生儿 幼儿 小孩 孩子 青少年 成人 成年人 老年 老年人 老人 中老年 孕妇 孕期
    孕早期 孕晚期 妊娠期 怀孕 哺乳期 产后 术后 女性 男性 男人 女人 单纯 单纯性 轻度的 严重的""".split(), key=len, reverse=True))
_MODIFIER_SUFFIXES = tuple(sorted("发作 早期 晚期 初期 患者 病人 复发".split(), key=len, reverse=True))
# Who a modifier names -> the prefixes KB names use for that group's own entry (宝宝腹泻 -> 小儿腹泻 when the KB has it).
POPULATIONS = (
    (("小儿", "儿童", "宝宝", "婴儿", "婴幼儿", "幼儿", "小孩", "孩子", "新生儿"), ("小儿", "儿童", "婴幼儿", "婴儿", "新生儿")),
    (("孕妇", "孕期", "孕早期", "孕晚期", "妊娠期", "怀孕"), ("妊娠期", "妊娠", "妊娠合并")),
    (("老年", "老年人", "老人", "中老年"), ("老年", "老年性")),
    (("产后",), ("产后",)),
)


def loose_key(norm: str) -> str:
    """A normalized surface without 性, 疼 written 痛, 口服溶液 written 口服液 (the pharmacopoeia's newer name for the
    same dosage form), with one way to write type numbers, and without a trailing 病/症/综合征/感染 (kept when
    nothing else is left)."""
    key = norm.replace("性", "").replace("疼", "痛").replace("口服溶液", "口服液")
    key = _NUMBERED.sub(lambda m: _NUMERALS[m.group(1)], key)
    for suffix in _LOOSE_SUFFIXES:
        if key.endswith(suffix) and len(key) - len(suffix) >= 2:
            return key[: -len(suffix)]
    return key


# Numbers, sizes, ages, durations and sides written around a name in a patient's description (左肾结石0.6cm, 八十多).
_FRAME = re.compile(r"[0-9a-z]+|[一二三四五六七八九十百千万两半几多余]+|个月|厘米|毫米|公分|岁|天|年|周|次|左侧|右侧|双侧|"
                    r"单侧|两侧|左|右|双|了")


def frame_only(norm: str) -> bool:
    """`norm` (normalized) holds nothing but numbers, sizes, ages, sides and modifier words: no content of its own."""
    rest = _FRAME.sub("", norm)
    while rest:
        for m in _MODIFIER_PREFIXES + _MODIFIER_SUFFIXES:
            if rest.startswith(m):
                rest = rest[len(m):]
                break
        else:
            return False
    return True


def strip_modifiers(norm: str) -> str:
    """`norm` without leading and trailing modifier words (轻度, 小儿, 孕妇, 术后, 反复, ... / 发作, 患者)."""
    changed = True
    while changed:
        changed = False
        for m in _MODIFIER_PREFIXES:
            if norm.startswith(m) and len(norm) - len(m) >= 2:
                norm, changed = norm[len(m):].lstrip("的"), True
                break
        for m in _MODIFIER_SUFFIXES:
            if norm.endswith(m) and len(norm) - len(m) >= 2:
                norm, changed = norm[: -len(m)].rstrip("的"), True
                break
    return norm
