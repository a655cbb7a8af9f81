"""H2 by medical experts: blinded CSV + printable HTML sheets with a separate key; import of their scores.

Export writes `h2_items.csv` (what raters fill in), `h2_sheet.html` (the same items, printable, rubric on top)
and `h2_key.json` (item code -> test item and system; keep it away from raters). Import reads one filled CSV
per rater, joins them with the key and reports per-system means with bootstrap 95% CIs and inter-rater
agreement (Krippendorff's alpha, interval; Cohen's quadratic-weighted kappa when there are two raters).
"""

from __future__ import annotations

import csv
import html
import io
import json
import random
from collections import defaultdict
from pathlib import Path

from ktune.errors import InputError
from ktune.eval.h2 import DIMENSIONS, RUBRIC, RUBRIC_VERSION, blinded_answer, collect_answers
from ktune.eval.metrics import bootstrap_mean, cohen_kappa, krippendorff_alpha
from ktune.paths import atomic_write_text

CSV_FIELDS = ("code", "question", "answer", "helpfulness", "harmlessness", "comment")


def export_items(answer_rows: dict[str, list[dict]], out_dir: str | Path, seed: int = 0,
                 max_items: int | None = None) -> dict[str, Path]:
    """Write the blinded, order-randomised CSV and HTML sheets and the key file; returns their paths."""
    rng = random.Random(seed)
    items = list(collect_answers(answer_rows).items())
    items = rng.sample(items, len(items))[: max_items or None]
    entries = [(item_id, e, system) for item_id, e in items for system in e["answers"]]
    rng.shuffle(entries)
    key, rows = {}, []
    for n, (item_id, e, system) in enumerate(entries, 1):
        code = f"H{n:04d}"
        key[code] = {"id": item_id, "system": system, "split": e["split"]}
        rows.append({"code": code, "question": e["question"], "answer": blinded_answer(e["answers"][system]),
                     "helpfulness": "", "harmlessness": "", "comment": ""})
    out = Path(out_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    paths = {"csv": out / "h2_items.csv", "html": out / "h2_sheet.html", "key": out / "h2_key.json"}
    atomic_write_text(paths["csv"], "\ufeff" + buf.getvalue())  # BOM: spreadsheet programs read UTF-8
    atomic_write_text(paths["html"], render_html(rows))
    atomic_write_text(paths["key"], json.dumps({"rubric_version": RUBRIC_VERSION, "seed": seed, "items": key},
                                               ensure_ascii=False, indent=2))
    return paths


def render_html(rows: list[dict]) -> str:
    cells = "\n".join(
        f"<tr><td>{html.escape(r['code'])}</td><td>{html.escape(r['question'])}</td>"
        f"<td class='a'>{html.escape(r['answer']).replace(chr(10), '<br>')}</td><td></td><td></td><td></td></tr>"
        for r in rows
    )
    rubric = html.escape(RUBRIC).replace("\n", "<br>")
    return f"""<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>H2 评分表 ({RUBRIC_VERSION})</title>
<style>body{{font-family:sans-serif;font-size:11pt}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #444;padding:4px;vertical-align:top}}td.a{{width:45%}}tr{{page-break-inside:avoid}}</style>
</head><body><h1>H2 评分表</h1><p>量表版本 {RUBRIC_VERSION}</p><p>{rubric}</p>
<table><thead><tr><th>编号</th><th>问题</th><th>回答</th><th>有用性 1-5</th><th>无害性 1-5</th><th>备注</th></tr></thead>
<tbody>
{cells}
</tbody></table></body></html>
"""


def read_scores(path: str | Path) -> dict[str, dict[str, int]]:
    """{code: {dimension: score}} from one rater's filled CSV; blank cells are missing, bad ones an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read expert scores {path}: {exc}") from exc
    out = {}
    for n, row in enumerate(csv.DictReader(io.StringIO(text)), 2):
        if "code" not in row:
            raise InputError(f"{path}: no 'code' column; fill in the h2_items.csv that `ktune eval h2-export` wrote")
        scores = {}
        for d in DIMENSIONS:
            raw = (row.get(d) or "").strip()
            if not raw:
                continue
            if raw not in {"1", "2", "3", "4", "5"}:
                raise InputError(f"{path}:{n}: {d} must be an integer 1-5 or blank, got {raw!r}")
            scores[d] = int(raw)
        out[row["code"]] = scores
    return out


def import_scores(key_path: str | Path, score_paths: list[str | Path], n_boot: int = 2000) -> dict:
    """Per-system means (bootstrap 95% CI) over all raters, and inter-rater agreement per dimension."""
    key = json.loads(Path(key_path).read_text(encoding="utf-8"))
    items = key["items"]
    raters = {Path(p).stem: read_scores(p) for p in score_paths}
    unknown = sorted({c for s in raters.values() for c in s} - set(items))
    if unknown:
        raise InputError(f"codes {unknown[:5]} are not in {key_path}; use the key written with these items")
    per_system: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for scores in raters.values():
        for code, dims in scores.items():
            for d, v in dims.items():
                per_system[items[code]["system"]][d].append(v)
    codes = sorted(items)
    agreement = {}
    for d in DIMENSIONS:
        matrix = [[raters[r].get(c, {}).get(d) for c in codes] for r in raters]
        entry = {"krippendorff_alpha_interval": krippendorff_alpha(matrix, "interval")}
        if len(matrix) == 2:
            pairs = [(a, b) for a, b in zip(*matrix, strict=True) if a is not None and b is not None]
            entry["cohen_kappa_quadratic"] = cohen_kappa([a for a, _ in pairs], [b for _, b in pairs], "quadratic")
            entry["n_pairs"] = len(pairs)
        agreement[d] = entry
    return {
        "rubric_version": key.get("rubric_version"),
        "raters": sorted(raters),
        "n_items": len(items),
        "means": {s: {d: bootstrap_mean(v, n_boot) for d, v in dims.items()} for s, dims in per_system.items()},
        "agreement": agreement,
    }
