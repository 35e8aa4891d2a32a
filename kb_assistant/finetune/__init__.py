"""LoRA fine-tuning of the generator on a knowledge base (torch/peft are imported only when training).

    from kb_assistant.finetune import DataGenConfig, TrainConfig, generate_examples, train
    examples, stats = generate_examples(kb, DataGenConfig(n=300), exclude_evidence=[...])
    result = train(examples, default_generator_path(), "adapters/hr", TrainConfig(max_steps=100))

Modules: ``examples`` (the chat format, JSONL validation), ``data`` (RAFT-style KB-derived
examples), ``templates`` (question templates),
``train`` (the training loop), ``checkpoints``, ``adapters`` (manifest, compatibility check, merge),
``evaluate`` (before/after metrics).
"""

from .adapters import check_compatible, load_generator, merge_adapter, read_manifest
from .data import DataGenConfig, engine_context, generate_examples
from .evaluate import answer_metrics, before_after, format_table, items_from_examples, items_from_qa
from .examples import TrainExample, load_examples, parse_lines, save_examples
from .train import TrainConfig, TrainResult, split_examples, train

__all__ = [
    "DataGenConfig", "TrainConfig", "TrainExample", "TrainResult", "answer_metrics", "before_after",
    "check_compatible", "engine_context", "format_table", "generate_examples", "items_from_examples",
    "items_from_qa", "load_examples", "load_generator", "merge_adapter", "parse_lines", "read_manifest",
    "save_examples", "split_examples", "train",
]
