"""LoRA fine-tuning of the generator: a plain torch loop (predictable on a laptop CPU, same code on CUDA).

Loss is computed on the response tokens only (prompt tokens are masked with -100). The prompt text is
rendered by :func:`kb_assistant.prompts.render`,
the function the generator uses at serving time. Checkpoints (adapter weights, optimizer
state and RNG state, all safetensors + JSON: no pickle) are written atomically every ``save_every``
steps under ``<out>/checkpoints/``; ``resume=True`` continues from the newest one. The adapter kept at
the end is the one with the best held-out loss.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import DEVICES, DTYPES
from ..errors import ConfigError, KBError
from ..prompts import render
from ..settings import Settings, setting
from ..storage_utils import atomic_dir
from .checkpoints import latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .examples import TrainExample

logger = logging.getLogger(__name__)

#: LoRA target modules per model family (config.model_type)
DEFAULT_TARGETS: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


@dataclass
class TrainConfig(Settings):
    """LoRA and optimisation settings; ``max_steps`` (when set) wins over ``epochs``."""

    rank: int = setting(16, lo=1, hi=1024, doc="LoRA rank r")
    alpha: int = setting(32, lo=1, hi=4096, doc="LoRA alpha (scaling = alpha / rank)")
    dropout: float = setting(0.05, lo=0.0, hi=0.9, doc="LoRA dropout")
    target_modules: list[str] | None = setting(None, doc="modules to adapt; unset: per model family (q/k/v/o "
                                                         "and MLP projections)")
    top_layers: int | None = setting(None, lo=1, hi=1000,
                                     doc="adapt only the last N transformer layers (unset: all); on a CPU "
                                         "this skips the backward pass through the lower layers (~40 % "
                                         "faster steps)")
    lr: float = setting(5e-4, lo=1e-7, hi=1.0, doc="peak learning rate")
    weight_decay: float = setting(0.0, lo=0.0, hi=1.0, doc="AdamW weight decay")
    epochs: float = setting(1.0, lo=0.01, hi=1000, doc="passes over the training examples (ignored when "
                                                       "max_steps is set)")
    max_steps: int | None = setting(None, lo=1, hi=10_000_000, doc="optimizer steps (wins over epochs)")
    batch_size: int = setting(4, lo=1, hi=4096, doc="examples per step (before gradient accumulation)")
    grad_accum: int = setting(1, lo=1, hi=4096, doc="gradient accumulation steps")
    max_seq_len: int = setting(320, lo=16, hi=131_072, doc="longer examples are skipped (with a warning)")
    warmup_ratio: float = setting(0.06, lo=0.0, hi=0.5, doc="fraction of steps with linear warm-up")
    scheduler: str = setting("cosine", choices=("cosine", "linear", "constant"),
                             doc="learning-rate schedule after warm-up")
    max_grad_norm: float = setting(1.0, doc="gradient clipping")
    val_fraction: float = setting(0.1, lo=0.0, hi=0.5, doc="share of examples held out for validation loss")
    max_val_examples: int = setting(64, doc="cap on held-out examples")
    eval_every: int = setting(25, lo=1, hi=10_000_000, doc="steps between validation evaluations")
    save_every: int = setting(25, lo=1, hi=10_000_000, doc="steps between checkpoints (training resumes "
                                                           "from the last one)")
    keep_checkpoints: int = setting(2, lo=1, hi=1000, doc="checkpoints kept on disk")
    early_stopping_patience: int = setting(3, lo=0, hi=1000, doc="evaluations without improvement before "
                                                                 "stopping (0: off)")
    seed: int = setting(0, doc="random seed (data order, LoRA init)")
    device: str = setting("auto", choices=DEVICES, doc="where training runs")
    dtype: str = setting("auto", choices=DTYPES, doc="`auto` = bf16/fp16 on CUDA, fp32 on CPU")
    threads: int | None = setting(None, lo=1, hi=1024, doc="torch CPU threads (unset: torch's default)")

    def check(self) -> None:
        if self.target_modules is not None and not all(self.target_modules):
            raise ConfigError("TrainConfig.target_modules must be a list of module names, e.g. ['q_proj']")


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    train_seconds: float
    sec_per_step: float
    best_val_loss: float | None
    val_perplexity: float | None
    history: list[dict[str, float]]
    stopped_early: bool
    n_train: int
    n_val: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adapter_dir"] = str(self.adapter_dir)
        return d


# ------------------------------------------------------------------ tokenisation
def encode(tok: Any, ex: TrainExample, max_seq_len: int) -> tuple[list[int], list[int]] | None:
    """(input ids, labels) with the prompt masked; None when the example does not fit ``max_seq_len``."""
    prompt = tok(render(tok, ex.prompt_messages), add_special_tokens=False)["input_ids"]
    answer = tok(ex.response.strip(), add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None:
        answer = answer + [tok.eos_token_id]
    if len(prompt) + len(answer) > max_seq_len:
        return None
    return prompt + answer, [-100] * len(prompt) + answer


def split_examples(examples: Sequence[TrainExample], val_fraction: float, seed: int,
                   ) -> tuple[list[TrainExample], list[TrainExample]]:
    """Deterministic train/held-out split (at least one held-out example when val_fraction > 0)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = 0 if val_fraction <= 0 or len(examples) < 2 else max(1, round(len(examples) * val_fraction))
    val = [examples[i] for i in order[:n_val]]
    return [examples[i] for i in order[n_val:]], val


def _collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def response_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(sum of token NLL over response tokens, number of such tokens) for one batch.

    The output head runs only on the positions that predict a response token (a 49k-word head over
    every prompt position would cost ~20% of the step for nothing).
    """
    import torch.nn.functional as F

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = inner.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    logits = inner.get_output_embeddings()(hidden[:, :-1, :][keep]).float()
    loss = F.cross_entropy(logits, labels[keep], reduction="sum")
    return loss, int(keep.sum())


def evaluate_loss(model: Any, encoded: Sequence[tuple[list[int], list[int]]], pad_id: int, device: str,
                  batch_size: int = 8) -> float | None:
    """Mean response-token NLL over ``encoded`` (perplexity = exp of it); None when empty."""
    import torch

    if not encoded:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            batch = {k: v.to(device) for k, v in _collate(encoded[start:start + batch_size], pad_id).items()}
            loss, n = response_loss(model, batch)
            total, count = total + float(loss), count + n
    if was_training:
        model.train()
    return total / max(count, 1)


# ------------------------------------------------------------------ model
def lora_targets(model_path: Path, config: TrainConfig) -> list[str]:
    if config.target_modules:
        return list(config.target_modules)
    model_type = json.loads((model_path / "config.json").read_text(encoding="utf-8")).get("model_type", "")
    if model_type not in DEFAULT_TARGETS:
        raise ConfigError(f"no default LoRA target modules for model type {model_type!r}; set target_modules "
                          f"(known families: {', '.join(sorted(DEFAULT_TARGETS))})")
    return DEFAULT_TARGETS[model_type]


def load_for_training(model_path: Path, config: TrainConfig) -> tuple[Any, Any, str]:
    """(peft model, tokenizer, device) from a safetensors model folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..devices import resolve_device, resolve_dtype

    if not (model_path / "config.json").is_file():
        raise KBError(f"not a transformers model folder (no config.json): {model_path}; fine-tuning "
                      "needs the converted safetensors folder (kb_assistant.generation.ensure_converted)")
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    tok = AutoTokenizer.from_pretrained(str(model_path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=dtype)
    layers = None
    if config.top_layers:
        n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
        layers = list(range(max(0, n_layers - config.top_layers), n_layers)) if n_layers else None
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=lora_targets(model_path, config), task_type="CAUSAL_LM", bias="none",
                      layers_to_transform=layers)
    model = get_peft_model(model, lora)
    model.to(device)
    return model, tok, device


def _scheduler(optimizer: Any, config: TrainConfig, total: int) -> Any:
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    warmup = round(config.warmup_ratio * total)
    if config.scheduler == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total)
    if config.scheduler == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def train(examples: Sequence[TrainExample], model_path: str | os.PathLike[str], out: str | os.PathLike[str],
          config: TrainConfig | None = None, *, resume: bool = False, show_progress: bool | None = None,
          manifest_extra: dict[str, Any] | None = None, plan: Callable[[float], int] | None = None,
          plan_after: int = 3) -> TrainResult:
    """Train a LoRA adapter on ``examples`` and save it (PEFT safetensors + kb_adapter.json) in ``out``.

    ``plan`` (how ``kb tune`` fits training into a time budget): called as ``plan(sec_per_step, done)``
    with the seconds per step measured over ``plan_after`` steps (after the first, which warms up), and
    again after each held-out evaluation (later batches can be slower); it returns the total number of
    steps to train (never fewer than ``done``), and the learning-rate schedule is laid over them.
    """
    import torch
    from tqdm.auto import tqdm

    from .adapters import save_adapter
    from .examples import data_hash

    cfg = config or TrainConfig()
    model_path, out = Path(model_path), Path(out)
    if model_path.suffix.lower() == ".gguf":
        raise ConfigError("train from the converted safetensors folder (generation.ensure_converted), "
                          "not from a GGUF file")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    train_ex, val_ex = split_examples(examples, cfg.val_fraction, cfg.seed)
    val_ex = val_ex[: cfg.max_val_examples]
    model, tok, device = load_for_training(model_path, cfg)
    enc_train = [e for e in (encode(tok, ex, cfg.max_seq_len) for ex in train_ex) if e is not None]
    enc_val = [e for e in (encode(tok, ex, cfg.max_seq_len) for ex in val_ex) if e is not None]
    dropped = len(train_ex) + len(val_ex) - len(enc_train) - len(enc_val)
    if dropped:
        logger.warning("%d examples longer than max_seq_len=%d were skipped", dropped, cfg.max_seq_len)
    if not enc_train:
        raise ConfigError(f"no training example fits max_seq_len={cfg.max_seq_len}")
    mb_per_epoch = math.ceil(len(enc_train) / cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * mb_per_epoch / cfg.grad_accum))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _scheduler(optimizer, cfg, total)
    state: dict[str, Any] = {"step": 0, "best_val": None, "bad_evals": 0, "history": [], "seconds": 0.0}
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        state.update(load_checkpoint(ckpt, model, optimizer, scheduler))
        logger.info("resumed from %s (step %d)", ckpt, state["step"])
    elif resume:
        logger.warning("--resume: no checkpoint under %s, starting from scratch", out / "checkpoints")
    pad_id = tok.pad_token_id

    def micro_batch(m: int) -> list[tuple[list[int], list[int]]]:
        epoch, idx = divmod(m, mb_per_epoch)
        order = list(range(len(enc_train)))
        random.Random(cfg.seed * 1000 + epoch).shuffle(order)
        return [enc_train[i] for i in order[idx * cfg.batch_size:(idx + 1) * cfg.batch_size]]

    def checkpoint() -> None:
        save_checkpoint(out / "checkpoints" / f"step-{state['step']}", model, optimizer, scheduler,
                        {k: state[k] for k in ("step", "best_val", "bad_evals", "history", "seconds")})
        prune_checkpoints(out, cfg.keep_checkpoints)

    def evaluate() -> None:
        val = evaluate_loss(model, enc_val, pad_id, device)
        if val is None:
            return
        state["history"].append({"step": state["step"], "val_loss": round(val, 5)})
        if state["best_val"] is None or val < state["best_val"] - 1e-4:
            state["best_val"], state["bad_evals"] = val, 0
            best_dir = out / "checkpoints" / "best"
            atomic_dir(best_dir, lambda tmp: model.save_pretrained(str(tmp), safe_serialization=True))
        else:
            state["bad_evals"] += 1

    disable = (not logger.isEnabledFor(logging.INFO)) if show_progress is None else not show_progress
    bar = tqdm(total=total, initial=state["step"], desc="fine-tuning", unit="step", disable=disable)
    model.train()
    stopped_early = False
    t_start = time.perf_counter() - state["seconds"]
    t_loop = time.perf_counter()
    start_step = state["step"]
    first_plan = start_step + 1 + max(plan_after, 1)  # the step after which the rate is first measured
    step_seconds: list[float] = []  # training steps only, since the first (which warms up)

    def replan() -> None:  # at the mean rate of the training steps so far
        nonlocal total, scheduler
        measured = sum(step_seconds) / len(step_seconds)
        planned = max(state["step"], int(plan(measured, state["step"])))  # type: ignore[misc]
        if planned != total:
            logger.info("%.2f s/step measured: training %d steps (was %d)", measured, planned, total)
            total = planned
            scheduler = _scheduler(optimizer, cfg, total)
            for _ in range(state["step"]):  # the new schedule, at the step reached
                scheduler.step()
            bar.total = total
            bar.refresh()

    try:
        while state["step"] < total:
            step = state["step"]
            t_step = time.perf_counter()
            batches = [micro_batch(step * cfg.grad_accum + j) for j in range(cfg.grad_accum)]
            n_tokens = sum(sum(1 for y in lab[1:] if y != -100) for b in batches for _, lab in b)
            loss_sum = 0.0
            for b in batches:
                batch = {k: v.to(device) for k, v in _collate(b, pad_id).items()}
                loss, _ = response_loss(model, batch)
                (loss / max(n_tokens, 1)).backward()
                loss_sum += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] = step + 1
            state["seconds"] = time.perf_counter() - t_start
            train_loss = loss_sum / max(n_tokens, 1)
            state["history"].append({"step": state["step"], "loss": round(train_loss, 5),
                                     "lr": scheduler.get_last_lr()[0]})
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}")
            if state["step"] - start_step > 1:
                step_seconds.append(time.perf_counter() - t_step)
            if plan is not None and state["step"] == first_plan:
                replan()
            if state["step"] % cfg.eval_every == 0 or state["step"] == total:
                evaluate()
                if plan is not None and state["step"] >= first_plan and state["step"] < total:
                    replan()
                if cfg.early_stopping_patience and state["bad_evals"] >= cfg.early_stopping_patience:
                    logger.info("early stopping at step %d (no held-out improvement in %d evaluations)",
                                state["step"], state["bad_evals"])
                    stopped_early = True
            if state["step"] % cfg.save_every == 0 or state["step"] == total or stopped_early:
                checkpoint()
            if stopped_early:
                break
    except KeyboardInterrupt:
        logger.warning("interrupted at step %d: saving a checkpoint (resume with resume=True)", state["step"])
        checkpoint()
        raise
    finally:
        bar.close()
    n_run = state["step"] - start_step
    sec_per_step = (time.perf_counter() - t_loop) / n_run if n_run else 0.0
    best_dir = out / "checkpoints" / "best"
    if (best_dir / "adapter_model.safetensors").is_file():  # keep the adapter with the best held-out loss
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(best_dir / "adapter_model.safetensors")))
    best = state["best_val"]
    result = TrainResult(out, state["step"], round(state["seconds"], 2), round(sec_per_step, 3),
                         None if best is None else round(best, 5),
                         None if best is None else round(math.exp(best), 4), state["history"], stopped_early,
                         len(enc_train), len(enc_val), device)
    params_record = cfg.to_dict()
    params_record["target_modules"] = lora_targets(model_path, cfg)
    save_adapter(model, tok, out, model_path, data_hash=data_hash(examples), params=params_record,
                 metrics={"train": {k: v for k, v in result.to_dict().items() if k != "history"}},
                 history=state["history"], extra=manifest_extra)
    logger.info("adapter saved to %s (%d steps, %.1f s, %.2f s/step)", out, result.steps,
                result.train_seconds, result.sec_per_step)
    return result
