"""`DataConfig`: every knob of the dataset build, validated on creation."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from ktune.errors import ConfigError

FEWSHOT_SIZES = (50, 100, 200, 500, 1000, 2000)


@dataclass(frozen=True)
class DataConfig:
    seed: int = 13
    train_size: int = 10_000
    dev_size: int = 1_000
    test_seen_size: int = 1_000
    test_unseen_size: int = 1_000
    test_no_knowledge_size: int = 300
    absent_share: float = 0.07  # train/dev share of questions about entities the KB lacks (target 无)
    lacking_share: float = 0.04  # train/dev share of KB entities asked an attribute they lack
    heldout_fraction: float = 0.25  # templates per attribute kept out of train (used by the test splits)
    unseen_entity_share: float = 0.04  # entities (alias-closed groups) held out for test_unseen
    max_group_size: int = 4  # hold out only alias groups of at most this many entities
    max_per_pair: int = 3  # questions per (entity, attribute) pair in train
    vignette_share: float = 0.2
    search_share: float = 0.15
    # share of questions naming the entity by an alias/generic/variant (when one links back), by a homophone typo
    alias_share: float = 0.35
    typo_share: float = 0.03
    # share of disease questions that put a who / how severe / how often word around the name (轻度脂肪肝, 宝宝湿疹,
    # 孕妇贫血): the query still names the KB entry
    modifier_share: float = 0.12
    max_values: int = 10  # answer lists longer than this end with 等
    # skip (entity, attribute) pairs whose knowledge JSON is longer than this (about 0.1% of pairs)
    max_knowledge_chars: int = 1500
    fewshot_sizes: tuple[int, ...] = FEWSHOT_SIZES
    exports: bool = True
    progress: bool = True
    teacher_url: str | None = None
    teacher_model: str | None = None
    teacher_splits: tuple[str, ...] = ("train", "dev")
    teacher_timeout: float = 60.0
    teacher_retries: int = 3
    teacher_workers: int = 4

    def __post_init__(self):
        for name in (
            "train_size",
            "dev_size",
            "test_seen_size",
            "test_unseen_size",
            "test_no_knowledge_size",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1; pass a positive count")
        for name in (
            "absent_share",
            "lacking_share",
            "heldout_fraction",
            "unseen_entity_share",
            "vignette_share",
            "search_share",
            "alias_share",
            "typo_share",
            "modifier_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}={value} must be in [0, 1); pass a fraction such as 0.1")
        if self.absent_share + self.lacking_share >= 0.5:
            raise ConfigError(
                "absent_share + lacking_share must stay below 0.5 so most records are answerable"
            )
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ConfigError(
                f"heldout_fraction={self.heldout_fraction} must be in (0, 1): both sides need templates"
            )
        if self.max_knowledge_chars < 50:
            raise ConfigError(f"max_knowledge_chars={self.max_knowledge_chars} is too small; use at least 50")
        if self.max_per_pair < 1 or self.max_values < 2 or self.max_group_size < 1:
            raise ConfigError("max_per_pair and max_group_size must be >= 1 and max_values >= 2")
        if sorted(self.fewshot_sizes) != list(self.fewshot_sizes) or any(n < 1 for n in self.fewshot_sizes):
            raise ConfigError(
                f"fewshot_sizes={self.fewshot_sizes} must be positive and increasing, e.g. (50, 100)"
            )
        if bool(self.teacher_url) != bool(self.teacher_model):
            raise ConfigError(
                "a teacher needs both teacher_url and teacher_model (e.g. http://localhost:8000 qwen2.5)"
            )
        if self.teacher_retries < 0 or self.teacher_timeout <= 0 or self.teacher_workers < 1:
            raise ConfigError("teacher_retries must be >= 0, teacher_timeout > 0 and teacher_workers >= 1")

    @classmethod
    def scaled(cls, size: int, **overrides) -> DataConfig:
        """Defaults scaled to `size` train records: dev and the seen/unseen tests 10%, no-knowledge test 3%."""
        if size < 10:
            raise ConfigError(f"--size {size} is too small; use at least 10 (default {cls.train_size})")
        base = {
            "train_size": size,
            "dev_size": max(5, size // 10),
            "test_seen_size": max(5, size // 10),
            "test_unseen_size": max(5, size // 10),
            "test_no_knowledge_size": max(5, size * 3 // 100),
        }
        return cls(**{**base, **overrides})

    @classmethod
    def from_settings(cls, settings: dict) -> DataConfig:
        """Settings by field name plus `size` (as `--size`): the dev and test sizes scale from the train size
        (`size`, else `train_size`), and explicitly set sizes win over the scaled ones."""
        values = dict(settings)
        size = values.pop("size", None)
        for key in ("fewshot_sizes", "teacher_splits"):
            if key in values:
                values[key] = tuple(values[key])
        return cls.scaled(size if size is not None else values.get("train_size", cls.train_size), **values)

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, raw: dict) -> DataConfig:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in raw.items() if k in known}
        for key in ("fewshot_sizes", "teacher_splits"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)
