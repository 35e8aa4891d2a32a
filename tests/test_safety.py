"""Safety: PII redaction, sensitive words, the redacting log filter and the JSONL audit log."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from kb_assistant.config import load_word_list
from kb_assistant.errors import ConfigError
from kb_assistant.safety import (
    AuditLog,
    RedactingFilter,
    SafetyConfig,
    SafetyFilter,
    luhn_ok,
    redact,
)
from kb_assistant.types import Hit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail alice.smith+hr@example.co.uk now", "mail [EMAIL] now"),
        ("call 13812345678 today", "call [PHONE] today"),
        ("call +86 138 1234 5678", "call [PHONE]"),
        ("手机：15900001111。", "手机：[PHONE]。"),
        ("US office (415) 555-2671", "US office [PHONE]"),
        ("intl +44 20 7946 0958", "intl [PHONE]"),
        ("身份证 11010519491231002X 已登记", "身份证 [ID] 已登记"),
        ("id 110105194912310021", "id [ID]"),
        ("card 4111 1111 1111 1111 exp", "card [CARD] exp"),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("card 5500005555555559", "card [CARD]"),
    ],
)
def test_redact_pii(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "invoice 4111111111111112 is not a card (Luhn fails)",
        "version 1.2.3 and 15 working days",
        "order number 12345678",
        "the year 2024 and room 101",
        "",
    ],
)
def test_redact_leaves_non_pii(text):
    assert redact(text) == text


def test_luhn():
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")


def test_sensitive_question_refused_and_answer_masked(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# comment\nsecret project\n\n机密\n", encoding="utf-8")
    assert load_word_list(words) == ["secret project", "机密"]
    f = SafetyFilter(SafetyConfig(sensitive_words=["Salary"], word_list_path=str(words)))
    assert f.check_question("Tell me about the SECRET project") == SafetyConfig().refusal_text["en"]
    assert f.check_question("这是机密吗", "zh") == SafetyConfig().refusal_text["zh"]
    assert f.check_question("How many leave days?") is None
    assert f.find_sensitive("salary and secret project") == ["salary", "secret project"]
    cleaned = f.clean_answer("The salary list is with bob@corp.com")
    assert cleaned == "The *** list is with [EMAIL]"


def test_no_redaction_when_disabled():
    f = SafetyFilter(SafetyConfig(redact_answers=False))
    assert f.clean_answer("bob@corp.com") == "bob@corp.com"


def test_safety_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="sensitive_words"):
        SafetyConfig(sensitive_words=["ok", ""])
    with pytest.raises(ConfigError, match="word_list_path"):
        SafetyConfig(word_list_path=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="refusal_text"):
        SafetyConfig(refusal_text={"en": "no"})
    with pytest.raises(ConfigError, match="unknown safety setting"):
        SafetyConfig.from_dict({"words": ["x"]})
    assert SafetyConfig.from_dict({"sensitive_words": ["x"]}).sensitive_words == ["x"]


def test_redacting_log_filter(caplog):
    log = logging.getLogger("kb_assistant.test_safety")
    filt = RedactingFilter()
    log.addFilter(filt)
    try:
        with caplog.at_level(logging.INFO, logger="kb_assistant.test_safety"):
            log.info("question from %s about %s", "carol@example.com", "13900001111")
            log.info("plain %d", 3)
    finally:
        log.removeFilter(filt)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["question from [EMAIL] about [PHONE]", "plain 3"]


def test_audit_log_records_and_redacts(tmp_path):
    path = tmp_path / "logs" / "audit.jsonl"
    audit = AuditLog(path)
    hit = Hit("secret text", 0.9, "hr/leave.pdf", 2, "c1")
    rec = audit.write("mail me at dan@example.com", "15 days [1]", sources=[hit], timings={"total": 12.5},
                      mode="generated")
    assert rec["question"] == "mail me at [EMAIL]"
    rows = audit.read()
    assert len(rows) == 1
    row = rows[0]
    assert row["answer"] == "15 days [1]"
    assert row["sources"] == [{"score": 0.9, "source": "hr/leave.pdf", "page": 2, "chunk_id": "c1",
                               "metadata": {}}]
    assert row["timings"] == {"total": 12.5}
    assert row["mode"] == "generated"
    assert row["timestamp"].endswith("Z")
    raw = AuditLog(tmp_path / "raw.jsonl", redact_pii=False)
    raw.write("dan@example.com", "ok")
    assert raw.read()[0]["question"] == "dan@example.com"


def test_audit_log_concurrent_appends_never_interleave(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")

    def work(n: int) -> None:
        for i in range(20):
            audit.write(f"q{n}-{i}", "x" * 500)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 80
    expected = {f"q{n}-{i}" for n in range(4) for i in range(20)}
    assert {json.loads(line)["question"] for line in lines} == expected


def test_audit_read_skips_torn_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    audit.write("q", "a")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"question": "torn')
    assert [r["question"] for r in audit.read()] == ["q"]
