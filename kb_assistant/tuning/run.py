"""The ``kb tune`` run: hold out, probe, make data, measure, train within the budget, refit the gate,
measure again, decide. See :mod:`kb_assistant.tuning` for the steps."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KBError
from ..settings import Settings, setting
from ..storage_utils import atomic_write_json
from .budget import GATE_SEARCHES_PER_PROBE, Budget, epoch_cap, eval_interval

logger = logging.getLogger(__name__)

REPORT_FILE = "tune_report.json"
#: training settings of a tune run: the documented fine-tuning configuration (docs/finetuning.md)
TRAIN_SETTINGS: dict[str, Any] = {"batch_size": 4, "rank": 16, "alpha": 32, "lr": 5e-4, "max_seq_len": 384,
                                  "val_fraction": 0.1, "max_val_examples": 24}


@dataclass
class TuneConfig(Settings):
    """Settings of ``kb tune`` / ``KnowledgeBase.tune()``. Training uses the documented fine-tuning
    configuration (rank 16, batch 4, lr 5e-4, cosine) and the data the ``[query]`` prompt settings."""

    budget_minutes: float = setting(8.0, lo=0.5, hi=100_000,
                                    doc="wall-clock budget of the whole run (data, both evaluations, "
                                        "training, gate); training gets what the rest leaves")
    steps: int = setting(160, lo=1, hi=1_000_000,
                         doc="optimizer steps at most (fewer when the budget or `max_epochs` allows fewer)")
    seed: int = setting(0, doc="random seed of the held-out share, the probes, the data and the training")
    adopt: bool = setting(True, doc="make the adapter the knowledge base's default when it measures better "
                                    "(false: measure and report only)")
    heldout_share: float = setting(0.2, lo=0.05, hi=0.5,
                                   doc="share of the chunks held out of training for the probes")
    min_heldout: int = setting(4, lo=1, hi=1_000_000, doc="chunks held out at least (small knowledge bases)")
    probes: int = setting(40, lo=4, hi=100_000, doc="answerable probe questions at most (as many "
                                                    "unanswerable); fewer when the budget is short")
    min_probes: int = setting(12, lo=1, hi=100_000, doc="answerable probes however short the budget")
    per_chunk: int = setting(3, lo=1, hi=50, doc="probe questions made from one held-out chunk at most")
    min_examples: int = setting(32, lo=1, hi=1_000_000, doc="training examples at least")
    max_examples: int = setting(400, lo=1, hi=1_000_000, doc="training examples at most")
    max_epochs: float = setting(3.0, lo=0.1, hi=1000, doc="passes over the training examples at most")
    top_layers: int | None = setting(10, lo=1, hi=1000, doc="LoRA on the last N layers (unset: all); "
                                                             "~40 % faster steps on a CPU")
    threads: int | None = setting(None, lo=1, hi=1024, doc="torch CPU threads (unset: torch's default)")
    refit_gate: bool = setting(True, doc="refit the unknown gate (on probes from the training chunks only) "
                                         "with the adapter, adopted with it")
    min_facts_gain: float = setting(0.0, lo=0.0, hi=1.0,
                                    doc="facts must rise by more than this share (and by one probe at least)")
    unknown_f1_tolerance: float = setting(0.05, lo=0.0, hi=1.0,
                                          doc="unknown F1 may fall by this much (noise) and still adopt")


@dataclass
class TuneReport:
    """What a tune run measured and decided (also ``<adapter>/tune_report.json``)."""

    adopted: bool
    reason: str
    adapter: str
    before: dict[str, Any]
    after: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    heldout: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    probes: list[dict[str, Any]] = field(default_factory=list)
    #: the adapter the *before* answers used (None: the base generator)
    baseline_adapter: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        from .measure import format_table

        b = self.before
        return (f"{format_table(self.before, self.after)}\n(held-out probes: {b.get('answerable')} "
                f"answerable, {b.get('unanswerable')} unanswerable, from {self.heldout.get('chunks')} chunks "
                f"kept out of training)\n{self.reason}: {self.adapter}")


def _gate_skipped(kb: Any, cfg: TuneConfig) -> str | None:
    """Why the unknown gate is not refitted (None: it is)."""
    gcfg = kb.config.gate
    total = int(kb.docstore.counts()["chunks"])
    if not cfg.refit_gate:
        return "refit_gate = false"
    if gcfg.mode == "threshold":
        return "[gate] mode = 'threshold'"
    if total < gcfg.min_chunks:
        return f"{total} chunks, fewer than [gate] min_chunks = {gcfg.min_chunks}"
    return None


def _refit_gate(kb: Any, held_rows: set[int]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The knowledge base's unknown gate fitted (with its ``[gate]`` settings, as
    ``KnowledgeBase.calibrate_gate`` does) on probes from the training chunks only; not saved."""
    from ..gate import fit_gate, fit_options
    from .heldout import TrainingChunks

    try:
        models, report = fit_gate(lambda q, k: kb.search(q, k), TrainingChunks(kb.docstore, held_rows),
                                  kb.indexes.sparse, **fit_options(kb.config.gate, kb.config.query.k))
    except KBError as exc:
        return None, {"skipped": str(exc)}
    report["held_out_chunks_excluded"] = len(held_rows)
    return {"models": {lang: m.to_dict() for lang, m in models.items()}, "report": report}, report


def _train(examples: list[Any], model_path: Path, out: Path, cfg: TuneConfig, budget: Budget, reserve: float,
           show: bool, kb_path: Path) -> Any:
    """The LoRA adapter trained into ``out``: as many steps as fit the budget once ``reserve`` seconds are
    kept, ``cfg.steps`` and ``cfg.max_epochs`` passes at most."""
    from ..finetune.train import TrainConfig, train

    batch = TRAIN_SETTINGS["batch_size"]
    n_val = min(TRAIN_SETTINGS["max_val_examples"],  # as train's split_examples holds them out
                max(1, round(len(examples) * TRAIN_SETTINGS["val_fraction"])))
    cap = min(cfg.steps, epoch_cap(len(examples) - n_val, batch, cfg.max_epochs))
    every = eval_interval(min(cap, budget.prior_steps(cap)))
    budget.plan.update(budget_s=budget.seconds, steps_cap=cap, eval_every=every, reserve_s=round(reserve, 1),
                       examples=len(examples), device=budget.device)

    def plan(sec_per_step: float, done: int) -> int:  # the total steps, ``done`` of them trained already
        steps = done + budget.train_steps(sec_per_step, reserve=reserve, eval_every=every, n_val=n_val,
                                          batch_size=batch, cap=max(cap - done, 1))
        budget.plan.update(steps=steps, replanned_at=done)
        if steps < 10:
            logger.warning("the budget leaves time for %d training steps only (raise --budget-minutes)",
                           steps)
        return steps

    train_cfg = TrainConfig(**TRAIN_SETTINGS, max_steps=cap, eval_every=every, save_every=every,
                            top_layers=cfg.top_layers, threads=cfg.threads, seed=cfg.seed)
    result = train(examples, model_path, out, train_cfg, show_progress=show, plan=plan,
                   manifest_extra={"kb": str(kb_path.resolve()), "made_by": "kb tune"})
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # a tune run is not resumed
    return result


def _languages(kb: Any) -> int:
    return len({lang or "en" for lang in kb.docstore.catalog_rows()[2]})


def tune(kb: Any, config: TuneConfig | None = None, *, show_progress: bool | None = None) -> TuneReport:
    """Fine-tune ``kb``'s generator on the knowledge base itself within ``config.budget_minutes`` and make
    the adapter its default (``[generation] adapter``) when it measures better on held-out probes."""
    from tqdm.auto import tqdm

    from ..devices import resolve_device
    from ..finetune.adapters import update_metrics
    from ..finetune.data import DataGenConfig, generate_examples
    from .heldout import eval_probes, hold_out
    from .measure import ask_probes, decide, probe_metrics

    cfg = config or TuneConfig()
    if kb.config.generation.backend != "torch":
        raise KBError(f"kb tune trains a LoRA adapter for the torch generator; [generation] backend is "
                      f"{kb.config.generation.backend!r}: set backend = 'torch' to tune")
    show = logger.isEnabledFor(logging.INFO) if show_progress is None else show_progress
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    device = resolve_device("auto", "fine-tuning")
    budget = Budget(cfg.budget_minutes * 60.0, device)
    timings: dict[str, float] = {}
    stamp, n = time.strftime('%Y%m%d-%H%M%S', time.gmtime()), 1
    rel = f"adapters/tune-{stamp}"
    while (kb.path / rel).exists():  # two runs in one second
        n += 1
        rel = f"adapters/tune-{stamp}-{n}"
    out = kb.path / rel
    bar = tqdm(total=6, desc="kb tune", unit="stage", disable=not show)

    def stage(name: str) -> None:
        bar.set_description(f"kb tune: {name}")
        logger.info("kb tune: %s (%.0f s of %.0f s used)", name, budget.elapsed(), budget.seconds)

    def done(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 2)
        bar.update(1)

    try:
        # 1. held-out chunks and their probes
        stage("probes")
        t0 = time.perf_counter()
        held = hold_out(kb.docstore, cfg.heldout_share, cfg.seed, cfg.min_heldout)
        probes = eval_probes(held, kb.indexes.sparse, budget.n_probes(cfg.min_probes, cfg.probes),
                             cfg.per_chunk, cfg.seed)
        before_engine = kb.engine_with()
        generator = before_engine.generator
        model_path = generator.model_path
        baseline = str(generator.adapter) if generator.adapter else None
        done("probes", t0)

        # 2. training data from the other chunks (and no chunk holding a probe's sentence)
        stage("data")
        t0 = time.perf_counter()
        qc = kb.config.query
        n = budget.n_examples(cfg.steps, TRAIN_SETTINGS["batch_size"], cfg.min_examples, cfg.max_examples)
        data_cfg = DataGenConfig(n=n, seed=cfg.seed, k=qc.k, evidence_sentences=qc.evidence_sentences,
                                 max_context_tokens=qc.max_context_tokens)
        examples, data_stats = generate_examples(
            kb, data_cfg, exclude_evidence=[p.sentence for p in probes if p.answerable],
            exclude_chunks={row.chunk_id for row in held.values()}, count_tokens=generator.count_tokens,
            show_progress=show)
        if len(examples) < 2:
            raise KBError(f"only {len(examples)} training examples could be made from the knowledge base "
                          "(too little running text to tune on)")
        done("data", t0)

        # 3. the knowledge base's answers as they are
        stage("before")
        t0 = time.perf_counter()
        before_answers = ask_probes(before_engine, probes, show_progress=show, desc="before")
        before = probe_metrics(probes, before_answers)
        done("before", t0)

        # 4. training, sized to the budget once seconds per step are measured
        stage("train")
        t0 = time.perf_counter()
        gate_skip = _gate_skipped(kb, cfg)
        gate_searches = 0 if gate_skip else int(GATE_SEARCHES_PER_PROBE * kb.config.gate.probes
                                                * _languages(kb))
        reserve = budget.reserve(timings["before"], gate_searches, (before.get("retrieve_ms") or 0.0) / 1000)
        result = _train(examples, model_path, out, cfg, budget, reserve, show, kb.path)
        done("train", t0)

        # 5. the unknown gate, refitted with the adapter in place (adopted together)
        stage("gate")
        t0 = time.perf_counter()
        fitted, gate_report = (None, {"skipped": gate_skip}) if gate_skip else _refit_gate(kb, set(held))
        done("gate", t0)

        # 6. the same probes with the adapter (and the refitted gate); the decision
        stage("after")
        t0 = time.perf_counter()
        after_engine = kb.engine_with({"gate": {"fitted": fitted}} if fitted else None, adapter=out)
        after_answers = ask_probes(after_engine, probes, show_progress=show, desc="after")
        after = probe_metrics(probes, after_answers)
        done("after", t0)
    finally:
        bar.close()

    better, reason = decide(before, after, min_facts_gain=cfg.min_facts_gain,
                            unknown_f1_tolerance=cfg.unknown_f1_tolerance)
    adopted = better and cfg.adopt
    if better and not cfg.adopt:
        reason = "not adopted (adopt = false); it measured better: " + reason.removeprefix("adopted: ")
    if adopted:
        kb.update_config({"generation": {"adapter": rel}, **({"gate": {"fitted": fitted}} if fitted else {})})
    timings["total"] = round(budget.elapsed(), 2)
    report = TuneReport(
        adopted=adopted, reason=reason, adapter=rel, before=before, after=after, timings=timings,
        plan=budget.plan, heldout={"chunks": len(held), "share": cfg.heldout_share, "seed": cfg.seed},
        data=dict(data_stats), train={k: v for k, v in result.to_dict().items() if k != "history"},
        gate=gate_report, config=cfg.to_dict(), baseline_adapter=baseline,
        probes=[_probe_record(p, a, b)
                for p, a, b in zip(probes, before_answers, after_answers, strict=True)])
    update_metrics(out, {"tune": {"before": before, "after": after, "adopted": adopted, "reason": reason,
                                  "timings": timings, "heldout_chunks": len(held)}})
    atomic_write_json(Path(out) / REPORT_FILE, report.to_dict())
    logger.info("kb tune: %s in %.0f s", reason, timings["total"])
    return report


def _probe_record(probe: Any, before: Any, after: Any) -> dict[str, Any]:
    return {**probe.to_dict(), "before": before.to_dict(), "after": after.to_dict()}
