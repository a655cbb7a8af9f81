"""The SQLite backend: the store contract, named migrations, and refusing files that are not KBs."""

import logging
import sqlite3

import pytest

from ktune.errors import KBError
from ktune.kb import KnowledgeBase
from ktune.kb.migrations import SQLITE_MIGRATIONS
from ktune.kb.sqlite import SQLiteStore
from tests.conftest import FIXTURES
from tests.kb.store_contract import MIGRAINE, StoreContract, fill


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        s = SQLiteStore(tmp_path / "contract.sqlite")
        yield s
        s.close()


def test_a_blank_database_gets_every_migration_recorded(tmp_path):
    s = SQLiteStore(tmp_path / "blank.sqlite")
    assert s.applied_migrations() == sorted(name for name, _ in SQLITE_MIGRATIONS)
    assert [name for name, _ in SQLITE_MIGRATIONS] == sorted(name for name, _ in SQLITE_MIGRATIONS)  # names sort in order
    s.close()


def test_an_old_database_is_migrated_forward_keeping_its_content(tmp_path):
    path = tmp_path / "old.sqlite"
    old = SQLiteStore(path, migrations=SQLITE_MIGRATIONS[:1])
    fill(old, {"偏头痛": MIGRAINE}, {"偏头痛": "disease"})
    version = old.content_hash()
    assert old.applied_migrations() == ["m001_initial"]
    old.close()
    new = SQLiteStore(path, create=False)
    assert new.applied_migrations() == [name for name, _ in SQLITE_MIGRATIONS]
    indexes = {r[0] for r in new.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "facts_predicate" in indexes
    assert new.content_hash() == version and new.facts("偏头痛") == dict(sorted(MIGRAINE.items()))
    new.close()


def test_a_new_migration_runs_once_and_is_recorded(tmp_path):
    path = tmp_path / "m.sqlite"
    extra = [*SQLITE_MIGRATIONS, ("m999_test_notes", "CREATE TABLE notes(x TEXT)")]
    SQLiteStore(path, migrations=extra).close()
    again = SQLiteStore(path, migrations=extra)  # a second open must not re-run CREATE TABLE
    assert again.applied_migrations()[-1] == "m999_test_notes"
    again.close()


def test_a_missing_file_without_create_is_an_error_with_the_fix(tmp_path):
    with pytest.raises(KBError, match=r"no knowledge base at .*missing\.sqlite; create one with `ktune kb import"):
        KnowledgeBase.open(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


def test_a_text_file_is_not_a_knowledge_base(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("hello, this is not a database\n" * 200)
    with pytest.raises(KBError, match="is not a ktune knowledge base .*pass a KB file made by `ktune kb import`"):
        KnowledgeBase.open(path)
    assert path.read_text().startswith("hello")


def test_a_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users(name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(KBError, match="an SQLite database but not a ktune knowledge base"):
        KnowledgeBase.open(path, create=True)
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"users"}


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(KBError, match="is a folder"):
        KnowledgeBase.open(tmp_path, create=True)


def test_opening_with_another_schema_version_warns_naming_both(tmp_path, caplog):
    import json

    from ktune.kb.schema import DEFAULT_SCHEMA_PATH

    with KnowledgeBase.open(tmp_path / "k.sqlite", create=True) as kb:
        kb.import_file(FIXTURES / "mini_kb.jsonl")
        shipped = kb.schema.version
    raw = json.loads(DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8"))
    raw["version"] = "my-schema-7"
    (tmp_path / "s.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="ktune.kb.base"):
        KnowledgeBase.open(tmp_path / "k.sqlite").close()
        assert not caplog.records
        KnowledgeBase.open(tmp_path / "k.sqlite", schema=tmp_path / "s.json").close()
    assert len(caplog.records) == 1
    assert shipped in caplog.text and "my-schema-7" in caplog.text


def test_readers_see_the_old_version_while_a_writer_is_inside_its_transaction(tmp_path):
    path = tmp_path / "k.sqlite"
    with KnowledgeBase.open(path, create=True) as kb:
        kb.import_file(FIXTURES / "mini_kb.jsonl")
        version = kb.version
        reader = KnowledgeBase.open(path)
        with kb.store.transaction():
            kb.store.upsert_entity("新病", {"常见症状": ["发热"]}, kb.store.entity_ids())
            assert not reader.has_entity("新病") and reader.version == version
        assert reader.has_entity("新病")
        reader.close()


def test_a_second_writer_gets_a_clear_busy_error_and_the_first_one_wins(tmp_path):
    path = tmp_path / "k.sqlite"
    first = SQLiteStore(path)
    second = SQLiteStore(path, busy_timeout=0.05)
    with first.transaction():
        first.upsert_entity("偏头痛", MIGRAINE, first.entity_ids())
        with pytest.raises(KBError, match="another process is writing to it; retry"):
            with second.transaction():
                pass
    assert second.facts("偏头痛") == dict(sorted(MIGRAINE.items()))
    first.close()
    second.close()


def test_an_sqlite_error_inside_a_transaction_becomes_a_kb_error_and_rolls_back(tmp_path):
    store = SQLiteStore(tmp_path / "k.sqlite")
    fill(store, {"偏头痛": MIGRAINE})
    before = store.content_hash()
    with pytest.raises(KBError, match="SQLite error while writing .*nothing was changed"):
        with store.transaction():
            store.upsert_entity("阿莫西林胶囊", {"成份": ["阿莫西林"]}, store.entity_ids())
            store.conn.execute("INSERT INTO no_such_table VALUES(1)")
    assert store.content_hash() == before and store.kind("阿莫西林胶囊") is None
    store.close()
