"""Fine-tuning data: JSONL validation errors, templates, KB-derived examples, evaluation metrics."""

from __future__ import annotations

import json
import re

import pytest

from kb_assistant.errors import ConfigError
from kb_assistant.finetune.data import DataGenConfig, generate_examples
from kb_assistant.finetune.evaluate import (
    EvalItem,
    answer_metrics,
    bleu,
    format_table,
    is_unknown,
    items_from_examples,
    keyword_hit,
    rouge_l,
)
from kb_assistant.finetune.examples import TrainExample, data_hash, load_examples, save_examples
from kb_assistant.finetune.templates import questions_for
from kb_assistant.prompts import UNKNOWN_TEXT


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("line, message", [
    ('{"prompt": "hi"', "line 2: invalid JSON"),
    ('{"prompt": "hi"}', "line 2: missing 'response'"),
    ('{"prompt": "", "response": "x"}', "line 2: 'prompt' must be a non-empty string"),
    ('["prompt", "response"]', "line 2: expected a JSON object, got list"),
    ('{"text": "hello"}', "line 2: expected keys 'prompt' and 'response'"),
    ('{"prompt": "a", "response": "b", "messages": []}', "line 2: use either"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "line 2: 'messages' must be a list of at least 2"),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}',
     "line 2: messages[1].role must be one of system, user, assistant"),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}',
     "line 2: messages[1].content must be a non-empty string"),
    ('{"messages": [{"role": "assistant", "content": "q"}, {"role": "user", "content": "a"}]}',
     "line 2: the last message must have role 'assistant'"),
    ('{"prompt": "a", "response": "b", "meta": 3}', "line 2: 'meta' must be an object"),
])
def test_validation_errors_name_line_and_problem(tmp_path, line, message):
    path = _write_lines(tmp_path / "d.jsonl", ['{"prompt": "ok", "response": "fine"}', line])
    with pytest.raises(ConfigError) as err:
        load_examples(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_validation_counts_further_errors_and_rejects_empty(tmp_path):
    path = _write_lines(tmp_path / "d.jsonl", ["{", "{", '{"prompt": "a", "response": "b"}'])
    with pytest.raises(ConfigError, match=r"line 1: invalid JSON .*\(and 1 more\)"):
        load_examples(path)
    with pytest.raises(ConfigError, match="no training examples"):
        load_examples(_write_lines(tmp_path / "e.jsonl", ["", "  "]))
    with pytest.raises(ConfigError, match="not found"):
        load_examples(tmp_path / "missing.jsonl")


def test_valid_records_load_and_round_trip(tmp_path):
    path = _write_lines(tmp_path / "d.jsonl", [
        json.dumps({"prompt": "What is the VPN port?", "response": "Port 1194 [1]"}),
        "",
        json.dumps({"messages": [{"role": "system", "content": "s"},
                                 {"role": "user", "content": "年假几天？"},
                                 {"role": "assistant", "content": "15天 [1]"}], "meta": {"kind": "answer"}},
                   ensure_ascii=False),
    ])
    examples = load_examples(path)
    assert [ex.response for ex in examples] == ["Port 1194 [1]", "15天 [1]"]
    assert examples[0].prompt_messages == [{"role": "user", "content": "What is the VPN port?"}]
    assert examples[1].meta == {"kind": "answer"}
    out = save_examples(tmp_path / "sub" / "copy.jsonl", examples)
    again = load_examples(out)
    assert [e.messages for e in again] == [e.messages for e in examples]
    assert data_hash(again) == data_hash(examples)
    assert not list(out.parent.glob(".*"))  # no temp file left behind


# ------------------------------------------------------------------ templates
def test_templates_make_questions():
    qs = dict((t, q) for q, t in questions_for(
        "After 5 failed sign-in attempts the account is locked for 30 minutes.", "", "en"))
    assert qs["number"] == "After 5 failed sign-in attempts the account is locked for how many minutes?"
    qs = dict((t, q) for q, t in questions_for("A base chain is an entry point for packets.", "", "en"))
    assert qs["definition"] == "What is the base chain?"
    step = "To reset a password, open the self-service portal."
    qs = dict((t, q) for q, t in questions_for(step, "", "en"))
    assert qs["step"] == "How do I reset a password?"
    qs = dict((t, q) for q, t in questions_for(
        "Rules are usually found in /lib/udev/rules.d/ and /etc/udev/rules.d/.", "", "en"))
    assert qs["cloze"] == "Rules are usually found in which directories?"
    qs = dict((t, q) for q, t in questions_for(
        "dpkg keeps a log of all of its actions in /var/log/dpkg.log.", "", "en"))
    assert qs["cloze"] == "Dpkg keeps a log of all of its actions in which file?"
    qs = dict((t, q) for q, t in questions_for(
        "Only --force-overwrite is likely to be used regularly.", "", "en"))
    assert qs["cloze"] == "Only which option is likely to be used regularly?"
    qs = dict((t, q) for q, t in questions_for("全职员工每年享有15天带薪年假。", "", "zh"))
    assert qs["number"] == "全职员工每年享有多少天带薪年假？"


# ------------------------------------------------------------------ KB-derived data
DOCS = {
    "vpn.txt": ("The company VPN server is vpn.northwind.example on port 1194. "
                "VPN sessions are disconnected automatically after 10 hours. "
                "To connect to the VPN, open the OpenVPN client and import the profile from the intranet."),
    "passwords.txt": ("Passwords must be at least 14 characters long. "
                      "After 5 failed sign-in attempts the account is locked for 30 minutes. "
                      "A password manager is a tool that stores credentials securely."),
    "laptops.txt": ("Laptops are replaced every 4 years. "
                    "A docking station is a device that connects the laptop to monitors and a keyboard. "
                    "Return your laptop to Room B-112 within 5 working days."),
    "leave.txt": ("Full-time employees receive 25 days of paid annual leave. "
                  "Sick leave requires a doctor's note after 3 days. "
                  "Parental leave is a benefit that lasts up to 14 weeks."),
    "printing.txt": ("The office printers are named after planets. "
                     "To print in colour, select the Mars printer in the dialog. "
                     "Print jobs are deleted from the queue after 24 hours."),
    "canteen.txt": ("The canteen is open from 11:30 to 14:00. "
                    "A meal voucher is a card that pays for one lunch. "
                    "Vegetarian dishes are served every day of the week."),
}


@pytest.fixture(scope="module")
def small_kb(tmp_path_factory):
    from kb_assistant import KnowledgeBase

    root = tmp_path_factory.mktemp("ftkb")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    kb = KnowledgeBase(root / "kb")
    report = kb.ingest([docs], show_progress=False)
    assert report.ok
    yield kb
    kb.close()


def _passages(example: TrainExample) -> list[str]:
    return re.findall(r"^\[\d+\] (.*)$", example.prompt_messages[-1]["content"], flags=re.MULTILINE)


@pytest.mark.slow
def test_generated_examples_are_supported_with_distractors_and_unknowns(small_kb):
    examples, stats = generate_examples(small_kb, DataGenConfig(n=16, unknown_fraction=0.25, k=4, seed=1))
    answers = [e for e in examples if e.meta["kind"] == "answer"]
    unknowns = [e for e in examples if e.meta["kind"] == "unknown"]
    assert answers and unknowns, stats
    assert stats["answer examples"] == len(answers)
    for ex in answers:
        m = re.fullmatch(r"(.+) \[(\d+)\]", ex.response)
        assert m, ex.response
        sentence, n = ex.meta["sentence"], int(m.group(2))
        assert m.group(1).startswith(sentence)      # the answer sentence first (then the rest of its passage)
        passages = _passages(ex)
        assert sentence in passages[n - 1]          # the cited passage holds the answer sentence
        assert sentence in DOCS[ex.meta["source"].rsplit("/", 1)[-1]]  # ...which comes from the gold chunk
        assert ex.prompt_messages[0]["role"] == "system"
        assert ex.meta["question"] in ex.prompt_messages[-1]["content"]
    assert any(ex.meta["distractors"] >= 1 and len(_passages(ex)) >= 2 for ex in answers)
    for ex in unknowns:
        assert ex.response == UNKNOWN_TEXT["en"]
        gold = DOCS[ex.meta["source"].rsplit("/", 1)[-1]]
        assert all(p not in gold for p in _passages(ex))  # no passage from the gold chunk


@pytest.mark.slow
def test_exclude_evidence_keeps_eval_chunks_out(small_kb):
    evidence = ["VPN sessions are disconnected automatically after 10 hours"]
    examples, stats = generate_examples(small_kb, DataGenConfig(n=30, unknown_fraction=0.3, k=4),
                                        exclude_evidence=evidence)
    assert stats["chunks excluded (eval evidence)"] >= 1
    for ex in examples:
        assert "vpn.northwind.example" not in json.dumps(ex.messages)


@pytest.mark.slow
def test_gold_first_fraction_puts_the_gold_passage_first(small_kb):
    examples, _ = generate_examples(small_kb, DataGenConfig(n=12, unknown_fraction=0.0, k=4, seed=2,
                                                           gold_first_fraction=1.0))
    answers = [e for e in examples if e.meta["kind"] == "answer"]
    assert answers and all(e.meta["gold"] == 1 for e in answers)
    assert any(e.meta["distractors"] >= 1 for e in answers)  # distractors still there, after the gold
    with pytest.raises(ConfigError):
        DataGenConfig(gold_first_fraction=1.5)


@pytest.mark.slow
def test_unrelated_unknown_examples_hold_no_passage_of_the_question_chunk(small_kb):
    cfg = DataGenConfig(n=20, unknown_fraction=0.5, k=4, seed=4, unrelated_unknown_fraction=1.0)
    examples, stats = generate_examples(small_kb, cfg)
    unknowns = [e for e in examples if e.meta["kind"] == "unknown"]
    unrelated = [e for e in unknowns if e.meta["context"] == "unrelated"]
    assert unrelated and stats["unknown context unrelated"] == len(unrelated)
    for ex in unrelated:
        gold = DOCS[ex.meta["source"].rsplit("/", 1)[-1]]
        assert ex.response == UNKNOWN_TEXT["en"]
        assert all(p not in gold for p in _passages(ex))
    hard, _ = generate_examples(small_kb, DataGenConfig(n=20, unknown_fraction=0.5, k=4, seed=4,
                                                        unrelated_unknown_fraction=0.0))
    assert {e.meta["context"] for e in hard if e.meta["kind"] == "unknown"} == {"retrieved"}
    with pytest.raises(ConfigError):
        DataGenConfig(unrelated_unknown_fraction=-0.1)


@pytest.mark.slow
def test_answer_span_passage_quotes_the_cited_passage_answer_first(small_kb):
    cfg = DataGenConfig(n=12, unknown_fraction=0.0, k=4, seed=3)  # answer_span="passage" is the default
    examples, _ = generate_examples(small_kb, cfg)
    assert examples
    for ex in examples:
        m = re.fullmatch(r"(.+) \[(\d+)\]", ex.response)
        assert m, ex.response
        passage = " ".join(_passages(ex)[int(m.group(2)) - 1].split())
        sentence = ex.meta["sentence"]
        assert m.group(1).startswith(sentence)              # the question's sentence first...
        rest = m.group(1)[len(sentence):].strip()
        assert sorted((sentence + " " + rest).split()) == sorted(passage.split())  # ...then the rest of it
    single, _ = generate_examples(small_kb, DataGenConfig(n=12, unknown_fraction=0.0, k=4, seed=3,
                                                          answer_span="sentence"))
    assert single
    assert all(re.fullmatch(re.escape(e.meta["sentence"]) + r" \[\d+\]", e.response) for e in single)
    with pytest.raises(ConfigError, match="answer_span"):
        DataGenConfig(answer_span="chunk")


# ------------------------------------------------------------------ metrics
def test_rouge_l_and_bleu():
    assert rouge_l("the account is locked [1]", "the account is locked") == pytest.approx(1.0)
    assert rouge_l("locked account", "the account is locked") == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert rouge_l("", "x") == 0.0
    assert rouge_l("年假十五天", "年假为十五天") == pytest.approx(2 * 1.0 * (5 / 6) / (1 + 5 / 6))
    score, impl = bleu(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert score == pytest.approx(100.0) and impl


def test_unknown_and_keyword_metrics():
    assert is_unknown(UNKNOWN_TEXT["en"]) and is_unknown(UNKNOWN_TEXT["zh"]) and is_unknown("")
    assert not is_unknown("The VPN port is 1194 [1].")
    assert keyword_hit("Use port 1194 on vpn.northwind.example", ["1194", "VPN.northwind.example"]) == 1.0
    items = [EvalItem("q1", "en", True, [], ["p1 port 1194"], ["1194"], "port 1194"),
             EvalItem("q2", "en", False, [], ["p"]),
             EvalItem("q3", "en", False, [], ["p"])]
    m = answer_metrics(items, ["port 1194 [1]", UNKNOWN_TEXT["en"], "something else"])
    assert m["keyword_hit"] == 1.0
    assert m["unknown_precision"] == 1.0 and m["unknown_recall"] == 0.5
    assert m["unknown_f1"] == pytest.approx(2 / 3)
    assert m["faithfulness"] == pytest.approx(0.5)  # "port 1194" fully supported, "something else" not
    assert "unknown_f1" in format_table(m, m)


def test_items_from_heldout_examples():
    ex = TrainExample([{"role": "system", "content": "s"},
                       {"role": "user",
                        "content": "Passages:\n[1] Port 1194.\n[2] Other.\n\nQuestion: port?"},
                       {"role": "assistant", "content": "The VPN uses port 1194 [1]"}],
                      {"kind": "answer", "question": "port?", "lang": "en"})
    unk = TrainExample(ex.messages[:2] + [{"role": "assistant", "content": UNKNOWN_TEXT["en"]}],
                       {"kind": "unknown", "question": "port?", "lang": "en"})
    a, u = items_from_examples([ex, unk])
    assert a.answerable and a.passages == ["Port 1194.", "Other."] and a.keywords
    assert not u.answerable and not u.keywords


def test_cli_train_reports_invalid_data(tmp_path, capsys):
    from kb_assistant.cli import main

    bad = _write_lines(tmp_path / "bad.jsonl", ['{"prompt": "q", "response": "a"}', '{"prompt": 1}'])
    code = main(["finetune", "train", "--kb", str(tmp_path / "kb"), "--data", str(bad), "--out",
                 str(tmp_path / "adapter")])
    assert code == 1
    assert "line 2: 'prompt' must be a non-empty string" in capsys.readouterr().err
    assert not (tmp_path / "adapter").exists()
