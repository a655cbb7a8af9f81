"""What people ask about a condition or drug that no field of the KB records: cost, which hospital, how long a
hospital stay lasts.

A small model maps such a question onto the nearest field it knows ("白内障手术大概多少钱" -> 白内障|治疗方案,
"强迫症去哪个医院看比较好" -> 强迫症|就诊科室) and the answer then lists facts that do not answer it. These asks are
recognised by their words and refused, saying that the KB does not record them. The words are few and unambiguous
on purpose: 医保 and 报销 are not among them (CMeKG records 是否纳入医保 and 医保药品 for drugs: "X可以医保报销吗" is a
药物分类 question), nor 去哪看 (a department is an answer), nor 住院 alone (住院必检项目 is a pathway field).
"""

from __future__ import annotations

import re

from ktune.kb.linker import normalize

# (what is asked, how it is written); read over normalize(question)
OUTSIDE_FIELDS = (
    ("费用", re.compile(r"多少钱|价格|价钱|费用|贵不贵|收费")),
    ("医院", re.compile(r"哪(个|家|所|间)医院|什么医院|医院(哪|排名|推荐)|哪(个|位)医生|哪个专家")),
    ("住院天数", re.compile(r"住(几|多少)天|住院(几|多少)天|住多久|住院多久|住多长时间")),
)


def outside_field(question: str) -> str | None:
    """The field the question asks that the KB does not record (费用, 医院, 住院天数), or None."""
    norm = normalize(question)
    return next((name for name, words in OUTSIDE_FIELDS if words.search(norm)), None)
