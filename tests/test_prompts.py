"""Prompt building, evidence extraction and follow-up rewriting (no model needed)."""

from __future__ import annotations

import pytest

from kb_assistant.answering.chat import is_followup, rewrite_followup
from kb_assistant.evidence import select_evidence, support_score, unsupported_details
from kb_assistant.prompts import (
    SYSTEM_PROMPTS,
    UNKNOWN_TEXT,
    build_messages,
    estimate_tokens,
    fit_passages,
    unknown_text,
)
from kb_assistant.text import detect_lang, split_sentences, terms


def test_detect_lang():
    assert detect_lang("How many leave days?") == "en"
    assert detect_lang("年假有多少天？") == "zh"
    assert detect_lang("VPN 怎么配置？") == "zh"


def test_build_messages_english():
    msgs, n = build_messages("How many days?", ["Staff get 15 days.", "Reports are due in 30 days."])
    assert n == 2
    assert msgs[0] == {"role": "system", "content": SYSTEM_PROMPTS["en"]}
    user = msgs[1]["content"]
    assert "[1] Staff get 15 days.\n[2] Reports are due in 30 days." in user
    assert user.endswith("Question: How many days?")


def test_build_messages_chinese_uses_chinese_template():
    msgs, _ = build_messages("年假有多少天？", ["全职员工每年享有15天年假。"])
    assert msgs[0]["content"] == SYSTEM_PROMPTS["zh"]
    assert "资料：\n[1] 全职员工每年享有15天年假。" in msgs[1]["content"]
    assert msgs[1]["content"].endswith("问题： 年假有多少天？")


def test_system_prompt_override():
    msgs, _ = build_messages("q?", ["p"], lang="en", system_prompts={"en": "Be terse."})
    assert msgs[0]["content"] == "Be terse."


def test_passages_fit_token_budget():
    passages = [f"Passage number {i} " + "word " * 30 for i in range(10)]
    counts = []

    def count(text: str) -> int:
        counts.append(text)
        return len(text.split())

    fitted = fit_passages(passages, max_tokens=100, count_tokens=count)
    assert len(fitted) == 2  # each numbered line costs 34 "tokens"
    assert counts  # the given counter was used
    # a single passage longer than the budget is cut, never dropped
    cut = fit_passages(["x " * 1000], max_tokens=50)
    assert len(cut) == 1 and len(cut[0]) < 2000
    _, n = build_messages("q", passages, max_context_tokens=100, count_tokens=count)
    assert n == 2


def test_estimate_tokens_counts_cjk_per_char():
    assert estimate_tokens("年假有多少天") >= 6
    assert estimate_tokens("a" * 40) == 11


def test_unknown_text_defaults_and_overrides():
    assert unknown_text("en") == UNKNOWN_TEXT["en"]
    assert unknown_text("zh") == "抱歉，知识库中没有找到与该问题相关的信息。"
    assert unknown_text("fr") == UNKNOWN_TEXT["en"]
    assert unknown_text("en", {"en": "No idea."}) == "No idea."


def test_split_sentences_english_and_chinese():
    assert split_sentences("Hello world. Version 2.5 is out! Next?") == [
        "Hello world.", "Version 2.5 is out!", "Next?"]
    zh = ["第一句。", "第二句！", "第三句？", "第四句；", "结尾"]
    assert split_sentences("".join(zh)) == zh
    assert split_sentences("line one\nline two") == ["line one", "line two"]
    long = split_sentences("word " * 300, max_chars=100)
    assert all(len(s) <= 100 for s in long)


def test_terms_english_and_chinese():
    assert terms("How many days of Annual Leave?") == ["days", "annual", "leave"]
    zh = terms("年假有多少天")
    assert "年" in zh and "假" in zh and "天" in zh


def test_select_evidence_picks_answer_sentence():
    passages = [
        "Our company was founded in 1990. The annual leave entitlement is 15 working days. Lunch is at noon.",
        "Expense reports are due within 30 days.",
    ]
    ev = select_evidence("How many days of annual leave do staff get?", passages)
    assert ev[0].text == "The annual leave entitlement is 15 working days."
    assert ev[0].passage == 0
    ev = select_evidence("When are expense reports due?", passages)
    assert ev[0].passage == 1


def test_select_evidence_chinese():
    passages = ["公司成立于1990年。全职员工每年享有15个工作日的年假。", "报销单须在30天内提交。"]
    ev = select_evidence("年假有多少天？", passages)
    assert ev[0].text == "全职员工每年享有15个工作日的年假。"
    ev = select_evidence("报销单什么时候提交？", passages)
    assert ev[0].passage == 1


def test_select_evidence_without_overlap_falls_back_to_top_passage():
    ev = select_evidence("zebra?", ["Alpha beta. Gamma delta."])
    assert len(ev) == 1 and ev[0].text == "Alpha beta." and ev[0].score == 0.0
    assert select_evidence("q", []) == []


def test_support_score():
    evidence = ["The annual leave entitlement is 15 working days."]
    assert support_score("Staff get 15 working days of annual leave [1].", evidence) > 0.7
    assert support_score("There are 365 days in a year on Mars.", evidence) < 0.5
    assert support_score("[1]", evidence) == 0.0


def test_unsupported_details_flags_invented_numbers_identifiers_and_echoes():
    ev = ["Purchases above 10,000 dollars must be approved by the CFO.", "Connect to vpn.acme.example."]
    q = "Who approves purchases above 10,000 dollars?"
    assert unsupported_details("The CFO approves purchases above 10,000 dollars [1].", ev, q) == []
    bad = unsupported_details("The CFO approves purchases above $1 million.", ev, q)
    assert bad == ["'1' not in evidence"]
    assert unsupported_details("Use vnet.acme.example.", ev) == ["'vnet.acme.example' not in evidence"]
    assert unsupported_details("Who approves purchases above 10,000 dollars? [1]", ev, q) == [
        "answer only repeats the question"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("And part-time staff?", True),
        ("What about contractors?", True),
        ("How do I request it?", True),
        ("Contractors?", True),
        ("How many days of annual leave do full-time staff get?", False),
        ("那兼职员工呢？", True),
        ("还有别的吗", True),
        ("它怎么申请？", True),
        ("全职员工每年有多少天年假？", False),
    ],
)
def test_is_followup(question, expected):
    assert is_followup(question) is expected


def test_rewrite_followup_english():
    prev = "How many days of annual leave do full-time staff get?"
    out = rewrite_followup("And part-time staff?", prev)
    assert out.endswith("And part-time staff?")
    assert "annual" in out and "leave" in out and "days" in out
    assert rewrite_followup("What is the VPN server address?", prev) == "What is the VPN server address?"
    assert rewrite_followup("And part-time staff?", None) == "And part-time staff?"


def test_rewrite_followup_chinese():
    out = rewrite_followup("那兼职员工呢？", "全职员工每年有多少天年假？")
    assert out == "全职员工每年有多少天年假：那兼职员工呢？"


def test_it_department_is_not_a_pronoun():

    assert not is_followup("What are the opening hours of the IT Service Desk?")
    assert is_followup("Is it open on Sundays?")
