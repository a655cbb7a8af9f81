"""What people ask about a condition or drug that no field of the KB records: cost, which hospital, how long a
hospital stay lasts, and what someone with a condition may eat or drink.

A small model maps such a question onto the nearest field it knows ("白内障手术大概多少钱" -> 白内障|治疗方案,
"强迫症去哪个医院看比较好" -> 强迫症|就诊科室) and the answer then lists facts that do not answer it. These asks are
recognised by their words and refused, saying that the KB does not record them. The words are few and unambiguous
on purpose: 医保 and 报销 are not among them (CMeKG records 是否纳入医保 and 医保药品 for drugs: "X可以医保报销吗" is a
药物分类 question), nor 去哪看 (a department is an answer), nor 住院 alone (住院必检项目 is a pathway field). A diet question is one only about a condition ("肾盂肾炎能吃辣的吗",
"十二指肠溃疡能喝牛奶吗", "糖尿病饮食"): what it asks to eat or drink names no drug, herb or formula of the KB and no
药 ("孕妇能吃小柴胡颗粒吗" and "高血压能吃阿司匹林吗" are 禁忌 / treatment questions the KB answers).
"""

from __future__ import annotations

import re

from ktune.kb.linker import normalize
from ktune.pipeline.query_types import is_sure

# (what is asked, how it is written); read over normalize(question)
OUTSIDE_FIELDS = (
    ("费用", re.compile(r"多少钱|价格|价钱|费用|贵不贵|收费")),
    ("医院", re.compile(r"哪(个|家|所|间)医院|什么医院|医院(哪|排名|推荐)|哪(个|位)医生|哪个专家")),
    ("住院天数", re.compile(r"住(几|多少)天|住院(几|多少)天|住多久|住院多久|住多长时间")),
)


TAKEN_KINDS = ("drug", "herb", "formula")  # what a question may ask to take: not a diet question
# eating or drinking something, asked of a condition; `food` is checked against the KB's drugs (see diet_asked)
DIET = re.compile(r"(?:能|可以|能不能|可不可以)(?:吃|喝)(?P<food>[^，,。？?！!；;\s吗么嘛呢]{1,8})(?:吗|么|嘛|呢|[？?]|$)"
                  r"|忌口|饮食|食疗")


def outside_field(question: str, kb=None, entity: str | None = None) -> str | None:
    """The field the question asks that the KB does not record (费用, 医院, 住院天数; with the KB and the question's
    linked entity also 饮食), or None."""
    norm = normalize(question)
    found = next((name for name, words in OUTSIDE_FIELDS if words.search(norm)), None)
    if found is None and kb is not None and entity is not None and diet_asked(question, kb, entity):
        return "饮食"
    return found


def diet_asked(question: str, kb, entity: str) -> bool:
    """`question`, about the condition `entity`, asks what may be eaten or drunk, and what it names is no drug."""
    if kb.kind(entity) != "disease":
        return False
    for m in DIET.finditer(question):
        food = m.group("food")
        if food is None:
            return True
        if "药" in food or any(is_sure(lk.method) and kb.kind(lk.entity) in TAKEN_KINDS
                               for text in (food, *(s for _, _, s in kb.linker.find_mentions(food)))
                               for lk in kb.link(text, k=3)):
            continue
        return True
    return False
