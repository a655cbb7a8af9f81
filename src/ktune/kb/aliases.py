"""Alias rows for entity linking: surface form -> canonical entity, with the predicate it came from.

Two sources: the KB's own name predicates (别称, 通用名, 商品名, ...) and names derived from drug
product keys, because users write generic names (二甲双胍) while CMeKG keys products (盐酸二甲双胍片).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

DERIVED = "derived:generic"

# Dosage forms, longest first so 肠溶片 is stripped before 片.
_FORMS = sorted(
    """片 胶囊 注射液 颗粒 颗粒剂 缓释片 控释片 肠溶片 分散片 泡腾片 咀嚼片 含片 口含片 薄膜衣片 糖衣片 缓释胶囊
    肠溶胶囊 软胶囊 硬胶囊 胶丸 口服液 口服溶液 糖浆 混悬液 干混悬剂 混悬剂 乳膏 软膏 凝胶 乳剂 滴眼液 眼膏 滴耳液
    滴鼻液 喷雾剂 气雾剂 吸入剂 粉雾剂 栓 栓剂 贴剂 贴 贴膏 膏药 丸 水丸 蜜丸 滴丸 浓缩丸 散 粉 粉剂 冲剂 茶
    酊 酊剂 搽剂 洗剂 溶液 注射剂 输液 大输液 合剂 酒 露 膏 煎膏 流浸膏 浸膏 口服乳 微丸 片剂 胶囊剂 丸剂""".split(),
    key=len,
    reverse=True,
)
_SALTS = sorted(
    """盐酸 硫酸 马来酸 枸橼酸 富马酸 琥珀酸 酒石酸 甲磺酸 磷酸 醋酸 乳酸 苯磺酸 甲苯磺酸 氢溴酸 门冬氨酸 葡萄糖酸
    硝酸 草酸 水杨酸 苹果酸 帕莫酸 丙酸 丁酸 戊酸 乙酸""".split(),
    key=len,
    reverse=True,
)
_PREFIXES = ("注射用", "复方", "小儿", "儿童")
_VARIANT = re.compile(r"[（(][^（）()]{0,12}[）)]$")
_ALIAS_SPLIT = re.compile(r"[；;、，,]")


def strip_variant(name: str) -> str:
    """盐酸地尔硫卓缓释胶囊（II） -> 盐酸地尔硫卓缓释胶囊."""
    return _VARIANT.sub("", name).strip()


def generic_names(name: str) -> list[str]:
    """Names a user may write for a drug product: form-free, salt-free and both."""
    base = strip_variant(name)
    out: list[str] = []
    if base.startswith("注射用"):
        base = base[3:]
    form_free = next((base[: -len(f)] for f in _FORMS if base.endswith(f) and len(base) - len(f) >= 2), base)
    for cand in (base, form_free):
        out.append(cand)
        salt = next((s for s in _SALTS if cand.startswith(s) and len(cand) - len(s) >= 2), None)
        if salt:
            out.append(cand[len(salt):])
        # 左氧氟沙星钠 / 头孢曲松钠: the counter-ion suffix
        if cand.endswith(("钠", "钾", "钙")) and len(cand) >= 4:
            out.append(cand[:-1])
    seen, result = {name}, []
    for c in out:
        if len(c) >= 2 and c not in seen:
            seen.add(c)
            result.append(c)
    return result


def alias_rows(
    entities: Iterable[tuple[str, str]], facts: Iterable[tuple[str, str, str]], alias_predicates: Iterable[str]
) -> Iterator[tuple[str, str, str]]:
    """(surface, entity, predicate) rows. `facts` need only hold the alias predicates' facts."""
    alias_predicates = set(alias_predicates)
    for entity, pred, value in facts:
        if pred not in alias_predicates:
            continue
        for part in {value, *(_ALIAS_SPLIT.split(value) if len(value) > 12 else ())}:
            part = part.strip()
            if 2 <= len(part) <= 60 and part != entity:
                yield part, entity, pred
                if pred == "通用名":
                    for g in generic_names(part):
                        yield g, entity, DERIVED
    for entity, kind in entities:
        if kind == "drug":
            for g in generic_names(entity):
                yield g, entity, DERIVED
        elif _VARIANT.search(entity):
            yield strip_variant(entity), entity, DERIVED
