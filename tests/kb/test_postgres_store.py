"""The PostgreSQL backend: the store contract, equal versions with SQLite, atomic imports, URLs in the CLI.

Needs a server: `export KTUNE_TEST_PG_URL=$(scripts/postgres.sh)`. Each test works in its own schema of
that database (dropped afterwards), so runs do not see each other's data.
"""

import json
import os
import sys
import uuid
from urllib.parse import quote

import pytest

from ktune.errors import KBError
from ktune.kb import KnowledgeBase
from tests.conftest import FIXTURES
from tests.kb.store_contract import CAPSULE, MIGRAINE, StoreContract, fill
from tests.kb.test_cli_kb import ktune

ENABLE = "set KTUNE_TEST_PG_URL to a PostgreSQL URL to run these tests: export KTUNE_TEST_PG_URL=$(scripts/postgres.sh)"


def with_schema(url: str, schema: str) -> str:
    """`url` with search_path set to `schema` (libpq `options` parameter)."""
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="module")
def server_url():
    url = os.environ.get("KTUNE_TEST_PG_URL")
    if not url:
        pytest.skip(ENABLE)
    return url


@pytest.fixture
def pg_url(server_url):
    """A URL whose tables live in a fresh, empty schema (dropped after the test)."""
    import psycopg

    schema = f"kt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield with_schema(server_url, schema)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _store(url, **kw):
    from ktune.kb.postgres import PostgresStore

    return PostgresStore(url, **kw)


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, pg_url):
        s = _store(pg_url)
        yield s
        s.close()


def _snapshot(kb):
    s = kb.store
    return (kb.version, s.counts(), list(s.iter_entities()), list(s.iter_facts()), list(s.iter_aliases()))


def test_the_fixture_kb_gets_the_same_version_and_content_as_in_sqlite(pg_url, mini_kb):
    with KnowledgeBase.open(pg_url, create=True) as kb:
        report = kb.import_file(FIXTURES / "mini_kb.jsonl")
        assert report.version_after == mini_kb.version != "empty"
        assert _snapshot(kb) == _snapshot(mini_kb)
        assert kb.store.content_hash() == mini_kb.store.content_hash() == kb.version
        assert kb.store.fact_counts() == mini_kb.store.fact_counts()
        assert kb.store.kind_counts() == mini_kb.store.kind_counts()
        entity = mini_kb.entities(kind="disease")[0]
        attribute = mini_kb.attributes_of(entity)[0]
        assert kb.acquire_knowledge(entity, attribute) == mini_kb.acquire_knowledge(entity, attribute) != {}
        assert kb.link(entity) == mini_kb.link(entity)
        assert list(kb.export()) == list(mini_kb.export())


AWKWARD = {
    "C:\\药\\路径": {"别称": ["back\\slash\\", "ctl\x08\x0c\x0b", "tab\tnew\nline\r"], "b": ["𝔸 beyond BMP", "ｱ"]},
    "Zeta": {"a": ["\\n literal", "x"]},
    "ｱ半角": {"成份": ["\\\\"]},
    "𝔸": {"成份": ["é", "e\u0301"]},
}


def test_content_hash_matches_sqlite_on_awkward_text(pg_url, tmp_path):
    from ktune.kb.sqlite import SQLiteStore

    lite = SQLiteStore(tmp_path / "awk.sqlite")
    pg = _store(pg_url)
    for store in (lite, pg):
        fill(store, AWKWARD, {n: "other" for n in AWKWARD})
    assert pg.content_hash() == lite.content_hash() != "empty"
    assert list(pg.iter_facts()) == list(lite.iter_facts()) and list(pg.iter_entities()) == list(lite.iter_entities())
    lite.close()
    pg.close()


def test_facts_for_an_entity_id_that_is_not_stored_are_refused(pg_url):
    store = _store(pg_url)
    fill(store, {"偏头痛": MIGRAINE})
    with pytest.raises(KBError, match="not in the KB; take `ids` from store.entity_ids"):
        with store.transaction():
            store.upsert_entity("偏头痛", {"治疗": ["休息"]}, {"偏头痛": 999})
    assert store.facts("偏头痛") == dict(sorted(MIGRAINE.items()))
    store.close()


def test_reimporting_the_same_file_keeps_the_version(pg_url):
    with KnowledgeBase.open(pg_url, create=True) as kb:
        first = kb.import_file(FIXTURES / "mini_kb.jsonl").version_after
        again = kb.import_file(FIXTURES / "mini_kb.jsonl", mode="upsert")
        assert again.version_after == first and kb.store.counts()["entities"] == again.entities_before


def test_a_failure_mid_import_leaves_the_database_unchanged(pg_url, monkeypatch):
    import ktune.kb.importer as importer

    with KnowledgeBase.open(pg_url, create=True) as kb:
        kb.import_file(FIXTURES / "mini_kb.jsonl")
        before = _snapshot(kb), kb.meta
        calls = {"n": 0}
        real = importer.clean_values

        def failing(values, counts):
            calls["n"] += 1
            if calls["n"] == 5:
                raise RuntimeError("disk on fire")
            return real(values, counts)

        monkeypatch.setattr(importer, "clean_values", failing)
        with pytest.raises(RuntimeError, match="disk on fire"):
            kb.import_file(FIXTURES / "mini_kb.jsonl", mode="replace")
        assert (_snapshot(kb), kb.meta) == before
    with KnowledgeBase.open(pg_url) as other:  # a fresh connection sees the same
        assert (_snapshot(other), other.meta) == before


def test_a_postgres_error_inside_a_transaction_becomes_a_kb_error_and_rolls_back(pg_url):
    store = _store(pg_url)
    fill(store, {"偏头痛": MIGRAINE})
    before = store.content_hash()
    with pytest.raises(KBError, match="PostgreSQL error while writing .*nothing was changed"):
        with store.transaction():
            store.upsert_entity("阿莫西林胶囊", CAPSULE, store.entity_ids())
            store.conn.execute("INSERT INTO no_such_table VALUES(1)")
    assert store.content_hash() == before and store.kind("阿莫西林胶囊") is None
    fill(store, {"阿莫西林胶囊": CAPSULE})  # the connection is usable afterwards
    assert store.facts("阿莫西林胶囊") == CAPSULE
    store.close()


def test_readers_see_the_old_version_while_a_writer_is_inside_its_transaction(pg_url):
    with KnowledgeBase.open(pg_url, create=True) as kb:
        kb.import_file(FIXTURES / "mini_kb.jsonl")
        version = kb.version
        reader = KnowledgeBase.open(pg_url)
        with kb.store.transaction():
            kb.store.upsert_entity("新病", {"常见症状": ["发热"]}, kb.store.entity_ids())
            assert kb.store.kind("新病") == ""  # the writer sees its own buffered write
            assert not reader.has_entity("新病") and reader.version == version
        assert reader.has_entity("新病")
        reader.close()


def test_a_second_writer_gets_a_clear_busy_error_and_the_first_one_wins(pg_url):
    first, second = _store(pg_url), _store(pg_url, busy_timeout=0.05)
    with first.transaction():
        first.upsert_entity("偏头痛", MIGRAINE, first.entity_ids())
        with pytest.raises(KBError, match="another process is writing to it; retry"):
            with second.transaction():
                pass
    assert second.facts("偏头痛") == dict(sorted(MIGRAINE.items()))
    first.close()
    second.close()


def test_an_old_database_is_migrated_forward_keeping_its_content(pg_url):
    from ktune.kb.migrations import POSTGRES_MIGRATIONS

    assert [n for n, _ in POSTGRES_MIGRATIONS] == sorted(n for n, _ in POSTGRES_MIGRATIONS)
    old = _store(pg_url, migrations=POSTGRES_MIGRATIONS[:1])
    fill(old, {"偏头痛": MIGRAINE}, {"偏头痛": "disease"})
    version = old.content_hash()
    assert old.applied_migrations() == ["m001_initial"]
    old.close()
    extra = [*POSTGRES_MIGRATIONS, ("m999_test_notes", "CREATE TABLE notes(x TEXT)")]
    new = _store(pg_url, create=False, migrations=extra)
    assert new.applied_migrations() == [n for n, _ in extra]
    indexes = {r[0] for r in new.conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname=current_schema()")}
    assert "facts_predicate" in indexes
    assert new.content_hash() == version and new.facts("偏头痛") == dict(sorted(MIGRAINE.items()))
    new.close()
    _store(pg_url, migrations=extra).close()  # a second open must not re-run CREATE TABLE notes


def test_an_empty_database_without_create_is_an_error_with_the_fix(pg_url):
    with pytest.raises(KBError, match=r"no knowledge base at postgresql://.*create one with `ktune kb import"):
        KnowledgeBase.open(pg_url)
    with pytest.raises(KBError):  # and nothing was created
        KnowledgeBase.open(pg_url)


def test_a_foreign_database_with_kb_table_names_is_refused_and_left_untouched(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE entities(x TEXT)")
        with pytest.raises(KBError, match="but is not a ktune knowledge base"):
            KnowledgeBase.open(pg_url, create=True)
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname=current_schema()")}
    assert tables == {"entities"}


def test_a_search_path_without_a_schema_is_a_kb_error_naming_the_fix(server_url):
    with pytest.raises(KBError, match="cannot set up the KB tables .*schema in search_path"):
        KnowledgeBase.open(with_schema(server_url, "kt_no_such_schema"), create=True)


def test_the_password_never_appears_in_the_store_path():
    from ktune.kb.store import redact

    assert redact("postgresql://kb:s3cret@db:5432/ktune") == "postgresql://kb:***@db:5432/ktune"
    assert redact("postgresql://kb@db/ktune") == "postgresql://kb@db/ktune"


def test_an_unreachable_server_is_a_kb_error_naming_the_script():
    pytest.importorskip("psycopg")
    with pytest.raises(KBError, match=r"cannot connect to PostgreSQL at postgresql://u:\*\*\*@127\.0\.0\.1:1/x .*scripts/postgres\.sh"):
        KnowledgeBase.open("postgresql://u:pw@127.0.0.1:1/x")


def test_a_missing_psycopg_is_a_kb_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "ktune.kb.postgres", raising=False)
    with pytest.raises(KBError, match=r'needs psycopg 3.*pip install -e "\.\[postgres\]"') as err:
        KnowledgeBase.open("postgresql://u:secret@127.0.0.1:1/x")
    assert "secret" not in str(err.value)


def test_the_cli_takes_a_postgres_url_for_kb_and_ktune_kb(pg_url, monkeypatch):
    report = json.loads(ktune("kb", "import", str(FIXTURES / "mini_kb.jsonl"), "--kb", pg_url, "--json").stdout)
    assert report["entities_after"] == 10
    stats = json.loads(ktune("kb", "stats", "--kb", pg_url, "--json").stdout)
    assert stats["version"] == report["version_after"] and stats["entities"] == 10
    monkeypatch.setenv("KTUNE_KB", pg_url)
    assert json.loads(ktune("kb", "stats", "--json").stdout)["version"] == report["version_after"]
