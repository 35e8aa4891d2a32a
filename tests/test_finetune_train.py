"""LoRA training on the embedded default generator: a 2-step run, resume, adapter/base mismatch."""

from __future__ import annotations

import json

import pytest

from kb_assistant.errors import ConfigError, KBError
from kb_assistant.finetune.examples import TrainExample
from kb_assistant.finetune.train import TrainConfig, split_examples
from kb_assistant.prompts import UNKNOWN_TEXT, build_messages


def _examples(n: int = 8) -> list[TrainExample]:
    facts = [("What is the VPN port?", "The VPN server listens on port 1194."),
             ("How long is a VPN session?", "VPN sessions end after 10 hours."),
             ("Where do I return my laptop?", "Return your laptop to Room B-112."),
             ("How long must passwords be?", "Passwords must be at least 14 characters long.")]
    out = []
    for i in range(n):
        q, a = facts[i % len(facts)]
        other = facts[(i + 1) % len(facts)][1]
        if i % 3 == 2:
            msgs, _ = build_messages(q, [other], lang="en")
            target = UNKNOWN_TEXT["en"]
        else:
            msgs, _ = build_messages(q, [other, a], lang="en")
            target = f"{a} [2]"
        out.append(TrainExample(msgs + [{"role": "assistant", "content": target}], {"kind": "x"}))
    return out


def _config(**kw) -> TrainConfig:
    base = dict(max_steps=2, batch_size=2, rank=4, alpha=8, dropout=0.0, top_layers=2, eval_every=1,
                save_every=1, val_fraction=0.25, scheduler="constant", warmup_ratio=0.0, threads=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_train_config_validation():
    with pytest.raises(ConfigError, match="rank"):
        TrainConfig(rank=0)
    with pytest.raises(ConfigError, match="scheduler must be one of"):
        TrainConfig(scheduler="step")
    with pytest.raises(ConfigError, match="target_modules"):
        TrainConfig(target_modules="q_proj")  # type: ignore[arg-type]


def test_split_is_deterministic_and_disjoint():
    ex = _examples(10)
    a_train, a_val = split_examples(ex, 0.2, seed=1)
    b_train, b_val = split_examples(ex, 0.2, seed=1)
    assert [id(e) for e in a_val] == [id(e) for e in b_val] and len(a_val) == 2 and len(a_train) == 8
    assert not {id(e) for e in a_val} & {id(e) for e in a_train}


def test_train_refuses_a_gguf(tmp_path):
    from kb_assistant.finetune.train import train

    with pytest.raises(ConfigError, match="converted safetensors"):
        train(_examples(), tmp_path / "model.Q4.gguf", tmp_path / "out", _config())


@pytest.fixture(scope="module")
def model_path():
    from kb_assistant.generation import default_generator_path

    return default_generator_path()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, model_path):
    from kb_assistant.finetune.train import train

    out = tmp_path_factory.mktemp("adapter") / "demo"
    result = train(_examples(), model_path, out, _config(), show_progress=False)
    return out, result


@pytest.mark.slow
def test_two_step_training_writes_a_loadable_adapter(trained, model_path):
    from kb_assistant.config import GenerationConfig
    from kb_assistant.finetune.adapters import check_compatible, config_hash, read_manifest
    from kb_assistant.generation import Generator

    out, result = trained
    assert result.steps == 2 and result.n_train == 6 and result.n_val == 2
    assert result.best_val_loss is not None and result.val_perplexity > 1.0
    assert [h["step"] for h in result.history if "loss" in h] == [1, 2]
    for name in ("adapter_model.safetensors", "adapter_config.json", "kb_adapter.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "step-2" / "optimizer.safetensors").is_file()
    manifest = read_manifest(out)
    assert manifest["base_model"] == "SmolLM2-135M-Instruct"
    assert manifest["base_config_hash"] == config_hash(model_path)
    assert manifest["params"]["rank"] == 4 and manifest["params"]["target_modules"]
    assert len(manifest["data_hash"]) == 16 and manifest["versions"]["peft"]
    assert manifest["metrics"]["train"]["steps"] == 2
    check_compatible(out, model_path)
    msgs = _examples()[0].prompt_messages
    text = Generator(model_path, adapter=out, device="cpu").generate(msgs, GenerationConfig(max_new_tokens=4))
    assert isinstance(text, str)


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint(tmp_path, model_path):
    from safetensors.torch import load_file

    from kb_assistant.finetune.train import latest_checkpoint, train

    straight = train(_examples(), model_path, tmp_path / "a", _config(max_steps=3), show_progress=False)
    train(_examples(), model_path, tmp_path / "b", _config(max_steps=2), show_progress=False)
    assert latest_checkpoint(tmp_path / "b").name == "step-2"
    resumed = train(_examples(), model_path, tmp_path / "b", _config(max_steps=3), resume=True,
                    show_progress=False)
    assert resumed.steps == 3
    assert [h["step"] for h in resumed.history if "loss" in h] == [1, 2, 3]
    losses = [h["loss"] for h in straight.history if "loss" in h]
    assert [h["loss"] for h in resumed.history if "loss" in h] == pytest.approx(losses, rel=1e-4)
    wa = load_file(str(tmp_path / "a" / "checkpoints" / "step-3" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "checkpoints" / "step-3" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] - wb[key]).abs().max() < 1e-5, key


@pytest.mark.slow
def test_adapter_for_another_base_model_is_refused(trained, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from kb_assistant.finetune.adapters import check_compatible, load_generator
    from kb_assistant.generation import Generator

    other = tmp_path / "tiny-llama"
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=128)
    LlamaForCausalLM(cfg).save_pretrained(other)
    out, _ = trained
    with pytest.raises(KBError, match="trained on base model 'SmolLM2-135M-Instruct'"):
        check_compatible(out, other)
    with pytest.raises(KBError, match="trained on"):
        load_generator(out, other)
    with pytest.raises(KBError, match="trained on"):
        Generator(other, adapter=out)
    # same architecture (config hash) but another model folder/name: still refused
    twin = tmp_path / "another-model"
    twin.mkdir()
    (twin / "config.json").write_text((model_path_of(out) / "config.json").read_text(), encoding="utf-8")
    with pytest.raises(KBError, match="trained on"):
        check_compatible(out, twin)


def model_path_of(adapter):
    from pathlib import Path

    return Path(json.loads((adapter / "kb_adapter.json").read_text())["base_model_path"])
