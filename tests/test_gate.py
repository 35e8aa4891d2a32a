"""The self-calibrating unknown gate: features, probes, fitting (deterministic with a seed), the engine
refusing without the generator, and a knowledge base fitting its own gate."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kb_assistant.answering import QueryEngine
from kb_assistant.config import GateConfig, QueryConfig
from kb_assistant.errors import ConfigError
from kb_assistant.gate import Gate, GateModel, fit_gate, gate_features, make_probes
from kb_assistant.gate.features import name_terms
from kb_assistant.gate.probes import ABSENT_NAMES, offtopic_bank
from kb_assistant.store.docstore import DocStore, DocumentRecord
from kb_assistant.store.sparse import SparseIndex
from kb_assistant.types import Chunk, Hit

TOPICS = [
    ("vpn", "The VPN server vpn.northwind.example listens on port 1194 and uses OpenVPN certificates."),
    ("leave", "Full-time employees receive 25 days of annual leave per calendar year in the company."),
    ("printer", "The office printer print01 accepts jobs from the print queue on the second floor."),
    ("backup", "Nightly backups of the file server are copied to the tape library at two in the morning."),
    ("badge", "Lost access badges are replaced by the security desk in the main lobby within one day."),
    ("wifi", "The guest wireless network is called northwind-guest and its password changes weekly."),
    ("mail", "Mailbox quotas are fifty gigabytes and older messages move to the archive after a year."),
    ("laptop", "Laptops are encrypted with a recovery key stored in the inventory database by the helpdesk."),
]
ZH = [
    ("zh-vpn", "公司的远程接入服务器地址是 vpn.northwind.example，使用证书登录，端口为一一九四。"),
    ("zh-leave", "全职员工每个日历年享有二十五天带薪年假，需要提前两周在人事系统中提交申请。"),
    ("zh-print", "二楼的打印机名称为 print01，员工需要先在打印队列中登记才能使用彩色打印。"),
]


def _store(tmp_path, copies: int = 6) -> tuple[DocStore, SparseIndex]:
    store = DocStore(tmp_path / "docstore.sqlite3")
    sparse = SparseIndex(tmp_path / "bm25.npz")
    rng = random.Random(0)
    for name, text in TOPICS + ZH:
        for c in range(copies):
            words = text.split(" ")
            rng.shuffle(words[2:])  # variants of the same facts, so every topic has several chunks
            body = text if c == 0 else " ".join(words)
            doc_id = f"{name}-{c}"
            lang = "zh" if name.startswith("zh") else "en"
            chunk = Chunk(chunk_id=f"{doc_id}-0", doc_id=doc_id, position=0, text=body,
                          metadata={"lang": lang, "heading": name}, n_tokens=40, embed_text=body)
            _, ids = store.replace_document(DocumentRecord(doc_id, f"/docs/{doc_id}.txt", doc_id, 0.0, 10),
                                            [chunk], np.zeros((1, 4), np.float32), [doc_id])
            sparse.add(ids, [body])
    return store, sparse


def _search(store: DocStore, sparse: SparseIndex):
    def search(query: str, k: int = 5) -> list[Hit]:
        scores, top = sparse.score_all(query)
        ids, raw = sparse.top(scores, k)
        rows = store.get_chunks(ids)
        return [Hit(text=rows[int(i)].text, score=float(s / top), source=rows[int(i)].path, page=None,
                    chunk_id=rows[int(i)].chunk_id,
                    metadata={**rows[int(i)].metadata, "bm25_norm": float(s / top),
                              "dense_score": float(s / top)})
                for i, s in zip(ids, raw, strict=True)]
    return search


def test_features_see_absent_names_and_coverage(tmp_path):
    store, sparse = _store(tmp_path)
    search = _search(store, sparse)
    question = "Which port does the VPN server listen on?"
    asked = gate_features(question, search(question), sparse)
    other = question.replace("VPN", "Kubernetes")
    absent = gate_features(other, search(other), sparse)
    assert asked["absent"] == 0 and asked["absent_name"] == 0 and asked["coverage"] > 0.9
    assert absent["absent_name"] > 0.2 and absent["absent"] >= absent["absent_name"]
    assert all(0.0 <= v <= 1.0 for v in [*asked.values(), *absent.values()])
    assert "kubernete" in name_terms("Which port does the Kubernetes server use?", sparse)
    assert name_terms("Which port does the VPN use?", sparse) == ["vpn"]  # sentence-initial word is no name


def test_xling_top_reads_the_cross_lingual_channel_and_is_zero_without_it(tmp_path):
    """The best cross-lingual cosine among the hits, whatever their rank; a knowledge base without that
    channel (no ``xling_score`` on its hits) gets 0, a constant its fitted gate gives no weight."""
    store, sparse = _store(tmp_path)
    question = "公司的远程接入服务器地址是什么？"
    hits = _search(store, sparse)(question)
    assert gate_features(question, hits, sparse)["xling_top"] == 0.0
    for hit, x in zip(hits, (0.31, 0.62, 0.18, 0.4, 0.2), strict=False):
        hit.metadata["xling_score"] = x
    assert gate_features(question, hits, sparse)["xling_top"] == pytest.approx(0.62)
    hits[0].metadata["xling_score"] = 1.7  # cosines of unnormalised vectors stay in [0, 1]
    assert gate_features(question, hits, sparse)["xling_top"] == 1.0
    assert "xling_top" in GateConfig().features


def test_probes_are_deterministic_and_of_every_kind(tmp_path):
    store, sparse = _store(tmp_path)
    a = make_probes(store, sparse, 20, seed=3)
    b = make_probes(store, sparse, 20, seed=3)
    assert [(p.question, p.kind) for p in a] == [(p.question, p.kind) for p in b]
    kinds = {p.kind for p in a}
    assert {"answerable", "offtopic", "swapped"} <= kinds
    swapped = [p for p in a if p.kind == "swapped"]
    assert swapped and all(any(n in p.question for n in ABSENT_NAMES[p.lang]) for p in swapped)
    assert all(not p.answerable for p in a if p.kind in ("offtopic", "swapped"))
    bank = set(offtopic_bank())
    assert all(p.question in bank for p in a if p.kind == "offtopic")


def test_bank_questions_the_documents_answer_are_never_negatives(tmp_path):
    store, sparse = _store(tmp_path)
    sparse.add(np.asarray([999]), [" ".join(q for q in offtopic_bank() if "cafeteria" in q)])
    negatives = {p.question for p in make_probes(store, sparse, 20) if p.kind == "offtopic"}
    assert not any("cafeteria" in q for q in negatives)


def test_fitted_gate_separates_held_out_questions_and_is_deterministic(tmp_path):
    store, sparse = _store(tmp_path)
    search = _search(store, sparse)
    models, report = fit_gate(search, store, sparse, n_probes=30, seed=1, min_probes=5)
    again, _ = fit_gate(search, store, sparse, n_probes=30, seed=1, min_probes=5)
    assert models["en"].to_dict() == again["en"].to_dict()
    assert "en" in report["languages"]
    gate = Gate(models, sparse)
    for q in ("How many days of annual leave do full-time employees receive?",
              "Where are lost access badges replaced?"):
        assert gate.decide(q, search(q))[0], q
    for q in ("How do I configure Salesforce single sign-on for Workday?",
              "What is the Kubernetes ingress controller version?"):
        assert not gate.decide(q, search(q))[0], q
    back = GateModel.from_dict(models["en"].to_dict())
    f = gate_features("Which port does the VPN use?", search("Which port does the VPN use?"), sparse)
    assert back.probability(f) == pytest.approx(models["en"].probability(f), abs=1e-5)


def test_engine_with_a_gate_refuses_without_building_the_generator(tmp_path):
    store, sparse = _store(tmp_path)
    search = _search(store, sparse)
    models, _ = fit_gate(search, store, sparse, n_probes=30, seed=1, min_probes=5)
    built = []
    engine = QueryEngine(lambda q, k, groups=None: search(q, k), lambda: built.append(1),
                         QueryConfig(answer_mode="extractive", unknown_threshold=0.0),
                         gate=Gate(models, sparse))
    refused = engine.ask("How do I configure Salesforce single sign-on for Workday?")
    assert refused.unknown and refused.mode == "unknown" and not built and 0.0 <= refused.confidence < 0.5
    answered = engine.ask("How many days of annual leave do full-time employees receive?")
    assert not answered.unknown and "25 days" in answered.text and answered.confidence > refused.confidence


def test_gate_config_validates_features():
    with pytest.raises(ConfigError, match="GateConfig.features"):
        GateConfig(features=["dense_top", "magic"])
    with pytest.raises(ConfigError, match="GateConfig.mode must be one of"):
        GateConfig(mode="always")


@pytest.mark.slow
def test_knowledge_base_fits_its_own_gate_and_keeps_it_in_config(tmp_path, write):
    from kb_assistant import KnowledgeBase

    docs = tmp_path / "docs"
    rng = random.Random(0)
    for i in range(30):  # 30 short policy pages, each three facts in another order
        facts = rng.sample([t for _, t in TOPICS], 3)
        write(docs / f"policy-{i}.md", f"# Policy {i}\n\n" + "\n\n".join(facts))
    kb = KnowledgeBase(tmp_path / "kb", {"gate": {"min_chunks": 1, "probes": 20}})
    report = kb.ingest(docs)
    assert "gate_s" in report.timings  # fitted right after the first ingest
    assert set(kb.config.gate.fitted["models"]) == {"en"}
    kb.close()
    kb = KnowledgeBase(tmp_path / "kb")
    assert kb.engine.gate is not None  # read back from config.toml
    assert kb.ask("How do I configure Salesforce single sign-on for Workday?").unknown
    assert not kb.ask("How many days of annual leave do full-time employees receive?",
                      answer_mode="extractive").unknown
    kb.update_config({"gate": {"mode": "threshold"}})
    assert kb.engine.gate is None
    kb.close()


def test_bagged_gate_is_deterministic_and_steadier_between_probe_samples(tmp_path):
    from kb_assistant.evaluation.metrics import best_threshold
    from kb_assistant.gate import _bagged

    store, sparse = _store(tmp_path)
    search = _search(store, sparse)
    bagged, _ = fit_gate(search, store, sparse, n_probes=30, seed=1, min_probes=5, bootstrap=10)
    again, _ = fit_gate(search, store, sparse, n_probes=30, seed=1, min_probes=5, bootstrap=10)
    assert bagged["en"].to_dict() == again["en"].to_dict() and 0.0 < bagged["en"].threshold < 1.0
    assert Gate(bagged, sparse).decide("Where are lost access badges replaced?",
                                       search("Where are lost access badges replaced?"))[0]
    # the same population of probe scores sampled 12 times: the bagged threshold moves less
    rng = np.random.default_rng(0)
    targets = {"target_unknown_recall": 0.6, "max_false_unknown": 0.05}
    single, bag = [], []
    for s in range(12):
        x = np.vstack([rng.normal(1.0, 1.0, (120, 2)), rng.normal(-1.0, 1.0, (120, 2))])
        y = np.asarray([1.0] * 120 + [0.0] * 120)
        m = GateModel.fit(x, y, ["a", "b"])
        p = np.asarray([m.probability({"a": a, "b": b}) for a, b in x])
        single.append(best_threshold(p[y == 1].tolist(), p[y == 0].tolist(), **targets)[0])
        bag.append(_bagged(m, x, y, 1.0, 25, random.Random(s), targets).threshold)
    spread = [np.std(np.log(np.asarray(t) / (1 - np.asarray(t)))) for t in (single, bag)]
    assert spread[1] < spread[0]
