"""Fixtures for the dataset tests: a 151-entity slice of CMeKG and one dataset built from it."""

from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent.parent / "fixtures" / "data_kb.jsonl"
SIZE = 300


@pytest.fixture(scope="session")
def data_kb_path(tmp_path_factory):
    from ktune.kb import KnowledgeBase

    path = tmp_path_factory.mktemp("data_kb") / "kb.sqlite"
    with KnowledgeBase.open(path, create=True) as kb:
        kb.import_file(FIXTURE)
    return path


@pytest.fixture
def data_kb(data_kb_path):
    from ktune.kb import KnowledgeBase

    kb = KnowledgeBase.open(data_kb_path)
    yield kb
    kb.close()


def small_config(**overrides):
    from ktune.data.config import DataConfig

    return DataConfig.scaled(SIZE, fewshot_sizes=(50, 100, 200), progress=False, **overrides)


@pytest.fixture(scope="session")
def built(data_kb_path, tmp_path_factory):
    """(out_dir, report) of one build on the fixture KB."""
    from ktune.data import build_dataset
    from ktune.kb import KnowledgeBase

    out = tmp_path_factory.mktemp("dataset")
    with KnowledgeBase.open(data_kb_path) as kb:
        report = build_dataset(kb, out, small_config())
    return out, report


def read_jsonl(path):
    import json

    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
