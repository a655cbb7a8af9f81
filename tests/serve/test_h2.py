"""The H2 rating page's API: blinded items grouped by question, ratings in SQLite per rater, and an export
that `ktune eval h2-import` reads back into per-system means."""

import csv
import io

import pytest
from fastapi.testclient import TestClient

from ktune.eval.h2_experts import export_items, import_scores
from ktune.serve.app import ServeSettings, create_app
from ktune.serve.h2 import RatingStore
from tests.serve.conftest import H2_ROWS


@pytest.fixture
def export(tmp_path):
    export_items(H2_ROWS, tmp_path / "h2", seed=1)
    return tmp_path / "h2"


def test_items_are_grouped_by_question_and_name_no_system(export):
    items = RatingStore(export).items()
    assert [len(i["answers"]) for i in items["items"]] == [2, 2]
    assert {i["question"] for i in items["items"]} == {"急性中耳炎吃什么药？", "偏头痛看什么科？"}
    text = str(items)
    assert "tuned" not in text and "plain" not in text and "s-1" not in text
    assert "相关知识" not in text  # blinded: the provenance line would give the tuned system away


def test_ratings_round_trip_through_h2_import(export, tiny_qa, tmp_path):
    with TestClient(create_app(tiny_qa, ServeSettings(h2_dir=str(export)))) as client:
        items = client.get("/v1/h2/items").json()["items"]
        codes = [a["code"] for item in items for a in item["answers"]]
        for code in codes:
            r = client.put("/v1/h2/ratings", json={"rater": "dr-wang", "code": code, "helpfulness": 4,
                                                   "harmlessness": 5, "comment": "好"})
            assert r.status_code == 200, r.text
        client.put("/v1/h2/ratings", json={"rater": "dr-wang", "code": codes[0], "helpfulness": 2, "harmlessness": 3})
        assert client.get("/v1/h2/ratings", params={"rater": "dr-wang"}).json()[codes[0]]["helpfulness"] == 2
        bad = client.put("/v1/h2/ratings", json={"rater": "dr-wang", "code": codes[0], "helpfulness": 7})
        assert bad.status_code == 400 and "1-5" in bad.json()["error"]["message"]
        assert client.put("/v1/h2/ratings", json={"rater": "a/b", "code": codes[0]}).status_code == 400
        assert client.put("/v1/h2/ratings", json={"rater": "x", "code": "H9999"}).status_code == 400
        exported = client.get("/v1/h2/export", params={"rater": "dr-wang"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert len(rows) == 4 and {r["helpfulness"] for r in rows} == {"2", "4"}
    (tmp_path / "dr-wang.csv").write_text(exported.text, encoding="utf-8")
    result = import_scores(export / "h2_key.json", [tmp_path / "dr-wang.csv"], n_boot=50)
    assert result["raters"] == ["dr-wang"] and set(result["means"]) == {"tuned", "plain"}
    assert (export / "h2_ratings.sqlite").exists()


def test_without_an_export_the_rating_api_says_how_to_start_one(tiny_qa):
    with TestClient(create_app(tiny_qa)) as client:
        r = client.get("/v1/h2/items")
        assert r.status_code == 404 and "--h2" in r.json()["error"]["message"]
        assert client.get("/h2").status_code == 200
