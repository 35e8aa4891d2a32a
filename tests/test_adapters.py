"""LoRA adapters on disk, on a tiny randomly initialised Llama: manifest, metrics, compatibility, merge.

The 2-step training run on the embedded model (tests/test_finetune_train.py, slow) covers train() and the
refusal by Generator/load_generator; this file covers adapters.py directly and fast.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from kb_assistant.errors import KBError  # noqa: E402
from kb_assistant.finetune.adapters import (  # noqa: E402
    MANIFEST,
    check_compatible,
    config_hash,
    merge_adapter,
    read_manifest,
    save_adapter,
    update_metrics,
)

VOCAB = 48


def _tiny_base(folder, hidden: int = 16):
    """A tiny Llama with a word-level tokenizer, saved as a model folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, vocab_size=VOCAB,
                      max_position_embeddings=32)
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(VOCAB - 3)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return _tiny_base(tmp_path_factory.mktemp("models") / "tiny-base")


def _lora_model(base_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_path))
    torch.manual_seed(1)
    cfg = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                          init_lora_weights=False)  # random B: the adapter changes the logits
    return peft.get_peft_model(model, cfg)


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapters") / "demo"
    (out / "checkpoints" / "step-1").mkdir(parents=True)  # saved earlier by the training loop
    save_adapter(_lora_model(base), None, out, base, data_hash="abcd1234abcd1234",
                 params={"rank": 2, "lr": 1e-3}, metrics={"train": {"steps": 1}},
                 history=[{"step": 1, "loss": 2.5}], extra={"source_kb": "kb"})
    return out


def test_save_adapter_writes_weights_and_manifest(adapter, base):
    names = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "checkpoints", MANIFEST} <= names
    assert names <= {"adapter_config.json", "adapter_model.safetensors", "checkpoints", MANIFEST,
                     "README.md"}  # PEFT's model card; no temp "adapter" folder left behind
    assert (adapter / "checkpoints" / "step-1").is_dir()  # kept, not replaced
    m = read_manifest(adapter)
    assert m["format_version"] == 1 and m["kind"] == "lora"
    assert m["base_model"] == "tiny-base" and m["base_model_path"] == str(base.resolve())
    assert m["base_config_hash"] == config_hash(base) and len(m["base_config_hash"]) == 16
    assert m["data_hash"] == "abcd1234abcd1234" and m["params"] == {"rank": 2, "lr": 1e-3}
    assert m["metrics"] == {"train": {"steps": 1}} and m["history"] == [{"step": 1, "loss": 2.5}]
    assert m["source_kb"] == "kb" and m["created"].endswith("Z")
    assert set(m["versions"]) == {"kb_assistant", "torch", "transformers", "peft"}
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(base.resolve())


def test_config_hash_ignores_volatile_keys(tmp_path, base):
    data = json.loads((base / "config.json").read_text())
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps(
        {**data, "transformers_version": "0.0.1", "_name_or_path": "elsewhere", "use_cache": False}))
    assert config_hash(tmp_path / "a") == config_hash(base)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({**data, "num_hidden_layers": 2}))
    assert config_hash(tmp_path / "b") != config_hash(base)
    with pytest.raises(KBError, match="cannot read the model config"):
        config_hash(tmp_path / "missing")


def test_read_manifest_errors(tmp_path):
    with pytest.raises(KBError, match="not a kb-assistant adapter"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text('{"kind": "lora",')
    with pytest.raises(KBError, match="invalid JSON"):
        read_manifest(tmp_path)


def test_update_metrics_merges_and_rewrites_atomically(adapter):
    before = read_manifest(adapter)
    update_metrics(adapter, {"eval": {"f1": 0.5}})
    update_metrics(adapter, {"eval": {"f1": 0.75}, "calibrated": True})
    m = read_manifest(adapter)
    assert m["metrics"] == {"train": {"steps": 1}, "eval": {"f1": 0.75}, "calibrated": True}
    assert {k: v for k, v in m.items() if k != "metrics"} == {k: v for k, v in before.items()
                                                            if k != "metrics"}
    with pytest.raises(TypeError):
        update_metrics(adapter, {"bad": object()})
    assert read_manifest(adapter) == m  # the failed update left the manifest as it was
    assert not [p for p in adapter.iterdir() if p.name.startswith(".")]  # no temp file left


def test_check_compatible(adapter, base, tmp_path):
    check_compatible(adapter, base)
    other = _tiny_base(tmp_path / "other-base", hidden=8)
    with pytest.raises(KBError, match="trained on base model 'tiny-base'"):
        check_compatible(adapter, other)
    with pytest.raises(KBError, match="no adapter_model.safetensors"):
        check_compatible(tmp_path, base)
    with pytest.raises(KBError, match="trained on"):
        merge_adapter(adapter, tmp_path / "merged", other)
    assert not (tmp_path / "merged").exists()  # refused before writing anything


def test_merge_gives_the_logits_of_base_plus_adapter(adapter, base, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = merge_adapter(adapter, tmp_path / "merged", base)
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in files and "adapter_config.json" not in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    info = json.loads((out / "kb_assistant_model.json").read_text())
    assert info["base_model"] == "tiny-base+demo" and info["adapter_data_hash"] == "abcd1234abcd1234"
    assert info["merged_from"] == str(base.resolve())

    ids = AutoTokenizer.from_pretrained(str(out))("w1 w5 w9 w20", return_tensors="pt").input_ids
    assert ids.shape[1] == 4
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(str(base)).eval()
        base_logits = plain(ids).logits
        with_adapter = peft.PeftModel.from_pretrained(plain, str(adapter)).eval()
        want = with_adapter(ids).logits
        got = AutoModelForCausalLM.from_pretrained(str(out)).eval()(ids).logits
    assert not torch.allclose(want, base_logits, atol=1e-4)  # the adapter matters
    assert torch.allclose(got, want, atol=1e-5)
    from kb_assistant.generation import base_model_name

    assert base_model_name(out) == "tiny-base+demo"
