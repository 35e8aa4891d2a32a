"""Bad values through the Python API and the real server are one-line ConfigErrors (#16 item 3):
search filters of the wrong type, a device the machine does not have."""

from __future__ import annotations

import pytest

from kb_assistant.errors import ConfigError

BAD_FILTERS = [{"source": 5}, {"tags": [1, 2]}, {"lang": None}, {"file_type": {"a": 1}},
               {"mtime_after": [1]}, {"mtime_before": "yesterday"}, {"doc_id": 3.5}]


@pytest.fixture(scope="module")
def tiny_kb(tmp_path_factory):
    from kb_assistant import KnowledgeBase

    root = tmp_path_factory.mktemp("api")
    (root / "vpn.txt").write_text("The VPN server listens on port 1194.")
    kb = KnowledgeBase(root / "kb")
    kb.ingest([root / "vpn.txt"], show_progress=False)
    yield kb
    kb.close()


@pytest.mark.parametrize("filters", BAD_FILTERS, ids=str)
def test_filters_of_the_wrong_type_are_config_errors(tiny_kb, filters):
    with pytest.raises(ConfigError) as err:
        tiny_kb.search("vpn port", k=3, filters=filters)
    msg = str(err.value)
    assert "\n" not in msg and ("search filter" in msg or "filter time" in msg)


def test_good_filters_still_work(tiny_kb):
    assert tiny_kb.search("vpn port", k=3, filters={"source": "*.txt", "lang": ["en"]})
    assert not tiny_kb.search("vpn port", k=3, filters={"source": "*.pdf"})


def test_the_server_answers_400_with_one_line(tiny_kb):
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from kb_assistant.server import create_app, running_server

    with running_server(create_app(tiny_kb)) as url:
        for filters in BAD_FILTERS[:3]:
            r = httpx.post(f"{url}/v1/search", json={"query": "vpn", "k": 3, "filters": filters}, timeout=60)
            assert r.status_code == 400, r.text
            message = r.json()["error"]["message"]
            assert "search filter" in message and "\n" not in message and "Traceback" not in message
        r = httpx.post(f"{url}/v1/search", json={"query": "vpn", "k": 3, "filters": {"source": "*.txt"}})
        assert r.status_code == 200 and r.json()["hits"]


def test_a_device_the_machine_lacks_is_a_config_error(monkeypatch):
    import torch

    from kb_assistant.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^embedding device 'cuda' is not available on this machine .*"
                                          r"set device = 'auto' or 'cpu'$"):
        resolve_device("cuda", "embedding")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("groups", ["hr", b"hr", [1, 2], ["hr", None]], ids=repr)
def test_groups_must_be_a_list_of_names(tiny_kb, tmp_path, groups):
    """``groups="hr"`` used to be read as the letters {"h", "r"}: a document ingested so was hidden from
    HR, and a search so matched nothing HR owns."""
    with pytest.raises(ConfigError, match=r"^groups must be a list of names"):
        tiny_kb.search("vpn port", k=3, groups=groups)
    (tmp_path / "hr.txt").write_text("Salaries are paid on the 25th.")
    with pytest.raises(ConfigError, match=r"^groups must be a list of names"):
        tiny_kb.ingest([tmp_path / "hr.txt"], groups=groups, show_progress=False)
    with pytest.raises(ConfigError, match=r"^tags must be a list of names"):
        tiny_kb.ingest([tmp_path / "hr.txt"], tags="policy", show_progress=False)
    assert tiny_kb.search("vpn port", k=3, groups=["hr"])  # the public document, as before


def test_a_megabyte_query_is_cut_not_encoded_whole(tiny_kb):
    """A 1 MB query through the Python API (the server refuses it at 4,000 characters) took 46 s in the
    cross-lingual encoder, which has no window of its own; it reads the first 4,000 characters now."""
    import time

    from kb_assistant.embedding_use import MAX_QUERY_CHARS

    t0 = time.perf_counter()
    hits = tiny_kb.search("vpn port " * 120_000, k=3)
    assert hits and time.perf_counter() - t0 < 20
    assert MAX_QUERY_CHARS == 4_000
