"""Oracle-entity ablation: the gold entity is forced into the query; the model decodes only the attribute."""

from __future__ import annotations

import logging

from ktune.eval.systems import Prediction, lookup

log = logging.getLogger(__name__)


class OracleEntitySystem:
    """Measures attribute prediction alone: prompt `问题：{q}\\n查询：{gold entity}|` -> `{attribute}\\n`."""

    name = "oracle entity + model attribute"
    note = ("ablation: the gold entity is forced after `查询：` and the model decodes only the attribute; "
            "abstains (no query) on items without a gold KB entity, so its refusal figures are not comparable")

    def __init__(self, run_dir, kb, batch_size: int = 16, max_new_tokens: int = 12, device: str = "cpu"):
        self.run_dir, self.kb, self.batch_size = run_dir, kb, batch_size
        self.max_new_tokens, self.device = max_new_tokens, device
        self._run = None

    def _load(self):
        if self._run is None:
            from ktune.train.run import load_run

            self._run = load_run(self.run_dir, device=self.device)
            self._run.model.eval()
        return self._run

    def predict_items(self, items, progress: bool = False) -> list[Prediction]:
        out: list[Prediction] = []
        starts = range(0, len(items), self.batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc=self.name, unit="batch", leave=False)
        for i in starts:
            out.extend(self._batch(items[i : i + self.batch_size]))
        return out

    def predict(self, questions: list[str]) -> list[Prediction]:
        raise TypeError("the oracle-entity system needs gold entities: call predict_items(items)")

    def _batch(self, items) -> list[Prediction]:
        from ktune.decoding import GreedyDecoder
        from ktune.prompt import encode_pieces

        run = self._load()
        fmt = run.prompt_format
        preds: list[Prediction] = [lookup(self.kb, None, None, oracle=True) for _ in items]  # abstain: no gold entity
        todo = [(n, it) for n, it in enumerate(items) if it.entity]
        if todo:
            prompts = [fmt.query_prompt(it.question) for _, it in todo]
            forced = [encode_pieces(run.tokenizer, [it.entity, fmt.separator]) for _, it in todo]
            texts = GreedyDecoder(run.model, run.tokenizer, fmt).texts(prompts, self.max_new_tokens, forced=forced,
                                                                       batch_size=self.batch_size)
            for (n, it), text in zip(todo, texts, strict=True):
                preds[n] = lookup(self.kb, it.entity, text.strip() or None, oracle=True, raw=text)
        return preds
