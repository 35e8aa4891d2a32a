"""``kb tune``: the budget (steps from measured seconds per step), the held-out share and its probes, the
adopt/not-adopt decision (a worse adapter leaves config.toml untouched), held-out chunks never in the
training data, the ``[generation] adapter`` setting, and the command end to end on the sample KB (slow)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kb_assistant.answering.build import adapter_for
from kb_assistant.errors import ConfigError
from kb_assistant.tuning import TuneConfig
from kb_assistant.tuning.budget import Budget, epoch_cap, eval_interval, steps_that_fit
from kb_assistant.tuning.heldout import TrainingChunks, hold_out, probe_keywords
from kb_assistant.tuning.measure import ProbeAnswer, decide, probe_metrics

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ budget
def test_steps_from_measured_seconds_per_step():
    # 100 s at 2 s/step, a held-out evaluation of 8 examples (2 batches x 0.4 steps) every 10 steps
    assert steps_that_fit(100, 2.0, eval_every=10, n_val=8, batch_size=4, cap=1000) == 46
    assert steps_that_fit(100, 2.0, eval_every=10, n_val=8, batch_size=4, cap=20) == 20  # the cap wins
    assert steps_that_fit(-5, 2.0, eval_every=10, n_val=8, batch_size=4, cap=20) == 1  # at least one
    slower = steps_that_fit(100, 4.0, eval_every=10, n_val=8, batch_size=4, cap=1000)
    assert slower == 23  # twice the seconds per step, half the steps
    assert epoch_cap(36, 4, 3.0) == 27 and eval_interval(160) == 26 and eval_interval(12) == 5


def test_budget_keeps_the_reserve_for_what_follows_training():
    budget = Budget(600.0, "cpu", start=time.perf_counter() - 100.0)  # 100 s already spent
    reserve = budget.reserve(before_s=60.0, gate_searches=500, retrieve_s=0.05)
    assert reserve == pytest.approx(1.5 * 60 + 500 * 0.05 * 1.2 + 10.0)
    steps = budget.train_steps(2.0, reserve=reserve, eval_every=10, n_val=8, batch_size=4, cap=10_000)
    left = 600.0 - 100.0 - reserve
    assert steps == pytest.approx(left / 2.16, abs=2)
    assert budget.plan["steps"] == steps and budget.plan["sec_per_step"] == 2.0


def test_budget_sizes_data_and_probes_before_measuring():
    eight = Budget(480.0, "cpu")
    assert eight.prior_steps(160) == 106  # 60 % of 8 minutes at the prior 2.7 s/step
    assert eight.n_examples(160, 4, 32, 400) == 265
    assert eight.n_probes(12, 40) == 32
    tiny = Budget(30.0, "cpu")
    assert tiny.n_examples(160, 4, 32, 400) == 32 and tiny.n_probes(12, 40) == 12  # the floors
    assert Budget(3600.0, "cuda").n_examples(160, 4, 32, 400) == 400  # the cap


def test_tune_config_validates():
    with pytest.raises(ConfigError, match="budget_minutes"):
        TuneConfig(budget_minutes=0.0)
    with pytest.raises(ConfigError, match="heldout_share"):
        TuneConfig(heldout_share=0.9)


def test_tune_needs_the_torch_backend(kb_factory):
    from kb_assistant.errors import KBError

    kb = kb_factory(config={"generation": {"backend": "llama_cpp"}})
    with pytest.raises(KBError, match="backend is 'llama_cpp': set backend = 'torch' to tune"):
        kb.tune()


@pytest.mark.slow
def test_train_follows_the_plan(tmp_path):
    """train(plan=...) asks after the measured steps and again after each held-out evaluation (later
    steps can be slower), and trains the planned number of steps, never fewer than it has trained."""
    from test_finetune_train import _config, _examples

    from kb_assistant.finetune.train import train
    from kb_assistant.generation import default_generator_path

    seen = []

    def plan(sec_per_step: float, done: int) -> int:
        seen.append((sec_per_step, done))
        return 8 if done < 6 else 5  # the budget shrinks after the second evaluation

    config = _config(max_steps=50, eval_every=3)
    result = train(_examples(), default_generator_path(), tmp_path / "a", config, show_progress=False,
                   plan=plan, plan_after=2)
    assert [done for _, done in seen] == [3, 3, 6] and all(s > 0 for s, _ in seen)
    assert result.steps == 6 and result.best_val_loss is not None  # evaluated at the (new) last step


# ------------------------------------------------------------------ decision
def _metrics(facts: float, f1: float, n: int = 20) -> dict:
    return {"answerable": n, "facts": facts, "unknown_f1": f1}


def test_decision():
    assert decide(_metrics(0.40, 0.60), _metrics(0.50, 0.60))[0]
    assert decide(_metrics(0.40, 0.60), _metrics(0.50, 0.56))[0]  # within the 5-point tolerance
    ok, why = decide(_metrics(0.40, 0.60), _metrics(0.50, 0.50))
    assert not ok and "unknown F1" in why
    ok, why = decide(_metrics(0.40, 0.60), _metrics(0.40, 0.80))
    assert not ok and why.startswith("not adopted: facts 40.0 -> 40.0")
    assert not decide(_metrics(0.40, 0.60), _metrics(0.35, 0.60))[0]
    assert not decide(_metrics(0.40, 0.60), _metrics(0.45, 0.60), min_facts_gain=0.1)[0]


def test_probe_metrics():
    from kb_assistant.tuning.heldout import EvalProbe

    probes = [EvalProbe("q1", True, "number", "en", ["14"]), EvalProbe("q2", True, "cloze", "en", ["a", "b"]),
              EvalProbe("q3", False, "offtopic", "en"), EvalProbe("q4", False, "swapped", "en")]
    answers = [ProbeAnswer("At least 14 characters [1]", False, "generated", 900.0, 20.0),
               ProbeAnswer("Only a [1]", False, "extractive", 1100.0, 30.0),
               ProbeAnswer("I don't know.", True, "unknown", 40.0, 20.0),
               ProbeAnswer("Something [1]", False, "generated", 1000.0, 20.0)]
    m = probe_metrics(probes, answers)
    assert m["facts"] == 0.5 and m["keyword_recall"] == 0.75
    assert m["unknown_precision"] == 1.0 and m["unknown_recall"] == 0.5 and m["unknown_f1"] == 0.6667
    assert m["false_unknown"] == 0.0 and m["generated_share"] == 0.5 and m["p50_ms"] == 950.0


# ------------------------------------------------------------------ held-out share and probes
def test_hold_out_is_a_deterministic_share_by_chunk_text(docstore, add_doc):
    for d in range(10):
        add_doc(docstore, f"/docs/d{d}.txt", [f"Document {d} part {p} says something." for p in range(3)])
    held = hold_out(docstore, 0.2, seed=0, minimum=4)
    assert len(held) == 6 and held.keys() == hold_out(docstore, 0.2, seed=0, minimum=4).keys()
    assert held.keys() != hold_out(docstore, 0.2, seed=1, minimum=4).keys()
    assert len(hold_out(docstore, 0.05, seed=0, minimum=4)) == 4  # the minimum
    view = TrainingChunks(docstore, set(held))
    ids, docs, langs = view.catalog_rows()
    assert not set(ids.tolist()) & set(held) and len(ids) == len(docs) == len(langs) == 24
    assert not set(view.chunk_ids().tolist()) & set(held) and view.version == docstore.version


def test_hold_out_is_the_same_wherever_the_knowledge_base_lives(tmp_path, add_doc):
    """Chunk ids hash the file's absolute path: the held-out chunks (and so the probes and the tune
    figures) must not change when the same files sit in another folder (a fresh clone, another user)."""
    from kb_assistant.store.docstore import DocStore

    texts = {}
    for root in ("/home/a/docs", "/srv/somewhere/else/docs"):
        (tmp_path / root.replace("/", "_")).mkdir()
        store = DocStore(tmp_path / root.replace("/", "_") / "docstore.sqlite")
        for d in range(10):
            add_doc(store, f"{root}/d{d}.txt", [f"Document {d} part {p} says something." for p in range(3)])
        texts[root] = sorted(r.text for r in hold_out(store, 0.2, seed=0, minimum=4).values())
        store.close()
    assert texts["/home/a/docs"] == texts["/srv/somewhere/else/docs"]


def test_probe_keywords_are_the_asked_span():
    assert probe_keywords("Dpkg keeps a log of all of its actions in which file?",
                          "dpkg keeps a log of all of its actions in /var/log/dpkg.log.", "en") \
        == ["var", "dpkg.log"]
    assert probe_keywords("Sessions end after how many hours?", "Sessions end after 10 hours.", "en") \
        == ["10"]
    assert probe_keywords("全职员工每年享有多少天带薪年假？", "全职员工每年享有15天带薪年假。", "zh") \
        == ["15"]
    assert probe_keywords("What is a docking station?",
                          "A docking station is a device that connects the laptop to monitors.", "en") \
        == ["connects", "monitors"]


# ------------------------------------------------------------------ kb.tune with the training stubbed
DOCS = {
    "vpn.txt": "The company VPN server is vpn.northwind.example on port 1194. VPN sessions are disconnected "
               "automatically after 10 hours.",
    "passwords.txt": "Passwords must be at least 14 characters long. After 5 failed sign-in attempts the "
                     "account is locked for 30 minutes.",
    "laptops.txt": "Laptops are replaced every 4 years. Return your laptop to Room B-112 within 5 working "
                   "days.",
    "leave.txt": "Full-time employees receive 25 days of paid annual leave. Sick leave requires a doctor's "
                 "note after 3 days.",
    "printing.txt": "Print jobs are deleted from the queue after 24 hours. Colour printing is limited to "
                    "200 pages per month.",
    "canteen.txt": "The canteen serves lunch for 90 minutes every day. A meal voucher is a card that pays "
                   "for one lunch.",
    "backup.txt": "Nightly backups are kept for 35 days. The backup job starts at 2 hours past midnight.",
    "badges.txt": "Lost badges are replaced within 2 days. Visitor badges expire after 12 hours.",
    "parking.txt": "The garage has 120 parking spaces. Electric cars may charge for up to 4 hours.",
    "travel.txt": "Hotel costs are refunded up to 150 euros per night. Travel requests need approval 14 days "
                  "ahead.",
}


@pytest.fixture(scope="module")
def tiny_kb(tmp_path_factory):
    from kb_assistant import KnowledgeBase

    root = tmp_path_factory.mktemp("tunekb")
    for name, text in DOCS.items():
        (root / "docs").mkdir(exist_ok=True)
        (root / "docs" / name).write_text(text, encoding="utf-8")
    kb = KnowledgeBase(root / "kb")
    assert kb.ingest([root / "docs"], show_progress=False).ok
    yield kb
    kb.close()


class _Generator:
    model_path = Path("/models/base")
    adapter = None

    @staticmethod
    def count_tokens(text: str) -> int:
        return len(text.split())


class _Engine:
    generator = _Generator()


@pytest.fixture
def stubbed(monkeypatch, tiny_kb):
    """kb.tune with training and the two evaluations replaced; ``state["after_ok"]`` decides whether the
    tuned answers hold the keywords, ``state["examples"]`` is what the training got."""
    import importlib

    train_mod = importlib.import_module("kb_assistant.finetune.train")
    measure_mod = importlib.import_module("kb_assistant.tuning.measure")

    state: dict = {"after_ok": False, "examples": None}

    def fake_train(examples, model_path, out, config, **kw):
        state["examples"], state["config"] = list(examples), config
        kw["plan"](1.0, 0)
        out.mkdir(parents=True)
        (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(model_path)}))
        (out / "kb_adapter.json").write_text(json.dumps({"metrics": {}}))
        return train_mod.TrainResult(out, 3, 3.0, 1.0, 0.5, 1.6, [], False, len(examples), 1, "cpu")

    def fake_ask(engine, probes, *, show_progress=False, desc=""):
        good = desc == "after" and state["after_ok"]
        return [ProbeAnswer(" ".join(p.keywords) + " [1]" if good else "Unrelated text [1]", False,
                            "generated", 10.0, 1.0) for p in probes]

    monkeypatch.setattr(train_mod, "train", fake_train)
    monkeypatch.setattr(measure_mod, "ask_probes", fake_ask)
    monkeypatch.setattr(tiny_kb, "engine_with", lambda *a, **k: _Engine())
    return state


def test_worse_adapter_is_not_adopted_and_the_config_is_unchanged(tiny_kb, stubbed):
    config_before = (tiny_kb.path / "config.toml").read_bytes()
    report = tiny_kb.tune(budget_minutes=1, show_progress=False)
    assert not report.adopted and report.reason.startswith("not adopted: facts")
    assert (tiny_kb.path / "config.toml").read_bytes() == config_before
    assert tiny_kb.config.generation.adapter is None
    saved = json.loads((tiny_kb.path / report.adapter / "tune_report.json").read_text())
    assert saved["adopted"] is False and saved["before"]["answerable"] == report.before["answerable"] > 0
    manifest = json.loads((tiny_kb.path / report.adapter / "kb_adapter.json").read_text())
    assert manifest["metrics"]["tune"]["adopted"] is False
    assert "train" in report.timings and report.plan["steps"] >= 1


def test_heldout_chunks_never_in_the_training_data(tiny_kb, stubbed):
    report = tiny_kb.tune(budget_minutes=1, show_progress=False)
    held = hold_out(tiny_kb.docstore, report.heldout["share"], report.heldout["seed"],
                    TuneConfig().min_heldout)
    held_ids = {row.chunk_id for row in held.values()}
    sentences = [p["sentence"] for p in report.probes if p["answerable"]]
    examples = stubbed["examples"]
    assert examples and held_ids and sentences
    for ex in examples:
        prompt = ex.prompt_messages[-1]["content"]
        assert ex.meta["chunk_id"] not in held_ids
        assert not any(row.text in prompt for row in held.values())
        assert not any(s in prompt or s in ex.response for s in sentences)


def test_better_adapter_is_adopted_and_loaded_from_config(tiny_kb, stubbed):
    from kb_assistant import KnowledgeBase

    stubbed["after_ok"] = True
    report = tiny_kb.tune(budget_minutes=1, show_progress=False)
    assert report.adopted and report.adapter.startswith("adapters/tune-")
    reopened = KnowledgeBase(tiny_kb.path)
    assert reopened.config.generation.adapter == report.adapter
    assert adapter_for(reopened.path, reopened.config) == tiny_kb.path / report.adapter
    reopened.close()
    tiny_kb.update_config({"generation": {"adapter": None}})


def test_a_missing_adapter_folder_falls_back_to_the_base_generator(tmp_path, caplog):
    from kb_assistant import KnowledgeBase

    kb = KnowledgeBase(tmp_path / "kb", {"generation": {"adapter": "adapters/gone"}})
    assert adapter_for(kb.path, kb.config) is None and "no such folder" in caplog.text
    kb.close()


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_kb_tune_end_to_end_on_the_sample_kb(tmp_path, capsys):
    from kb_assistant import KnowledgeBase
    from kb_assistant.cli import main

    kb = KnowledgeBase(tmp_path / "kb")
    assert kb.ingest([ROOT / "examples" / "sample_kb"], show_progress=False).ok
    kb.close()
    capsys.readouterr()
    code = main(["tune", "--kb", str(tmp_path / "kb"), "--budget-minutes", "2", "--steps", "2", "--threads",
                 "2", "--json", "-q"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"]["steps"] <= 2 and report["before"]["answerable"] >= 12
    assert set(report["timings"]) >= {"probes", "data", "before", "train", "gate", "after", "total"}
    adapter = tmp_path / "kb" / report["adapter"]
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "tune_report.json").is_file()
    reopened = KnowledgeBase(tmp_path / "kb")
    assert reopened.config.generation.adapter == (report["adapter"] if report["adopted"] else None)
    reopened.close()
