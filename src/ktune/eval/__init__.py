"""Stage 5, evaluation: every system on the same test items, per-item rows, metrics with 95% CIs, report.

    from ktune.eval import run_retrieval_suite, format_results_table
    metrics = run_retrieval_suite(kb, "data/", run_dir="runs/x", out="runs/x/eval")
    print(format_results_table(metrics))

Tree: metrics.py (Wilson CIs, refusal scores, grounding, agreement), items.py (test items), systems.py
(the Prediction interface, pipeline and predictions-file adapters), baselines/ (BM25, dense, rules, oracle),
retrieval.py / answers.py / fewshot.py (the tasks), h2.py + h2_experts.py (judge, expert sheets),
suites.py (what `ktune eval` runs), report.py + report_sections.py (report.md, metrics.json, PNGs).
"""

from ktune.eval.report import format_results_table, write_report
from ktune.eval.suites import EvalConfig, run_retrieval_suite

__all__ = ["EvalConfig", "format_results_table", "run_retrieval_suite", "write_report"]
