"""Training checkpoints: save/load round trip of a tiny LoRA model's training state, ordering, pruning."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from kb_assistant.finetune.checkpoints import (  # noqa: E402
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)


def _setup(lora_seed: int):
    """A tiny randomly initialised Llama (always the same base weights, as when loaded from disk) with a
    LoRA adapter initialised from ``lora_seed``, AdamW and a linear warm-up schedule."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=32)
    base = LlamaForCausalLM(cfg)
    torch.manual_seed(lora_seed)
    lora = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                           init_lora_weights=False)  # random A and B: a fresh adapter differs visibly
    model = peft.get_peft_model(base, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10))
    return model, optimizer, scheduler


def _step(model, optimizer, scheduler) -> float:
    ids = torch.randint(0, 64, (2, 8))  # drawn from the RNG whose state the checkpoint carries
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return float(loss.detach())


def _lora(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_round_trip_resumes_exactly(tmp_path):
    model, opt, sched = _setup(lora_seed=1)
    for _ in range(3):
        _step(model, opt, sched)
    ckpt = tmp_path / "checkpoints" / "step-3"
    save_checkpoint(ckpt, model, opt, sched, {"step": 3, "best_val": 1.25, "history": [{"step": 1}]})
    cont = [_step(model, opt, sched) for _ in range(2)]  # the run that was not interrupted
    after = _lora(model)

    fresh, opt2, sched2 = _setup(lora_seed=2)  # other adapter weights, empty optimizer, other RNG
    assert any(not torch.equal(v, after[k]) for k, v in _lora(fresh).items())
    meta = load_checkpoint(ckpt, fresh, opt2, sched2)
    assert meta["step"] == 3 and meta["best_val"] == 1.25 and meta["history"] == [{"step": 1}]
    assert sched2.last_epoch == 3 and opt2.param_groups[0]["lr"] == pytest.approx(1e-2 * 4 / 10)
    assert len(opt2.state) == len(opt.state) and all("exp_avg_sq" in s for s in opt2.state.values())
    resumed = [_step(fresh, opt2, sched2) for _ in range(2)]
    assert resumed == pytest.approx(cont, rel=1e-5)  # same batches (RNG), same optimizer moments
    for key, value in _lora(fresh).items():
        assert torch.allclose(value, after[key], atol=1e-6), key


def test_checkpoint_files_are_safetensors_and_json_only(tmp_path):
    model, opt, sched = _setup(lora_seed=1)
    _step(model, opt, sched)
    ckpt = tmp_path / "checkpoints" / "step-1"
    save_checkpoint(ckpt, model, opt, sched, {"step": 1})
    names = sorted(p.name for p in ckpt.rglob("*") if p.is_file())
    assert "adapter_model.safetensors" in names and "optimizer.safetensors" in names
    assert "trainer_state.json" in names
    assert all(n.endswith((".safetensors", ".json", ".md")) for n in names), names  # no .bin/.pt/.pkl
    for f in ckpt.rglob("*"):
        if f.is_file() and f.suffix != ".safetensors":
            assert not f.read_bytes().startswith(b"\x80"), f  # no pickle protocol header anywhere
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 1 and state["param_groups"][0]["lr"] > 0 and "scheduler" in state
    assert [p.name for p in ckpt.parent.iterdir()] == ["step-1"]  # no temp folder left


def _fake(root, step: int, complete: bool = True) -> None:
    d = root / "checkpoints" / f"step-{step}"
    d.mkdir(parents=True)
    if complete:
        (d / "trainer_state.json").write_text("{}")


def test_latest_checkpoint_orders_numerically_and_skips_incomplete(tmp_path):
    assert latest_checkpoint(tmp_path) is None  # no checkpoints folder
    for step in (2, 9, 10):
        _fake(tmp_path, step)
    _fake(tmp_path, 30, complete=False)  # no trainer_state.json: not a checkpoint
    (tmp_path / "checkpoints" / "best").mkdir()
    (tmp_path / "checkpoints" / ".step-40.x1y2").mkdir()  # a save in progress
    assert latest_checkpoint(tmp_path).name == "step-10"  # not "step-9" (string order)


def test_prune_keeps_the_newest(tmp_path):
    for step in (1, 2, 9, 10, 11):
        _fake(tmp_path, step)
    (tmp_path / "checkpoints" / "best").mkdir()
    prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best", "step-10", "step-11"]
    prune_checkpoints(tmp_path, 5)  # fewer than keep: nothing removed
    assert latest_checkpoint(tmp_path).name == "step-11"
    prune_checkpoints(tmp_path, 1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best", "step-11"]
