"""``kb tune``: the knowledge base fine-tunes its own generator within a time budget, and keeps the
adapter only when it measures better.

    report = kb.tune(budget_minutes=8)            # kb tune --kb DIR --budget-minutes 8
    print(report.table()); report.adopted         # also <kb>/adapters/tune-<time>/tune_report.json

1. **hold out** a deterministic share of the chunks (by hash of the chunk text; :mod:`.heldout`) and make
   probe questions from them: template questions whose keywords are the answer terms of their source
   sentence, and as many unanswerable ones (off-topic bank, absent-subject swaps);
2. **data**: RAFT-style training examples (:func:`kb_assistant.finetune.data.generate_examples`) from
   the other chunks — the held-out chunks and every chunk holding a probe's sentence kept out — sized to
   the budget (:mod:`.budget`);
3. **before**: the probes through the knowledge base's own answer path (retrieval, unknown gate, prompt,
   generator; :mod:`.measure`): facts, unknown F1, answer p50;
4. **train** the LoRA adapter (:func:`kb_assistant.finetune.train.train`): seconds per step measured on
   the first steps set the step count so that training and what follows fit the budget; early
   stopping on held-out loss;
5. **gate**: the unknown gate refitted on probes from the training chunks only;
6. **after**: the same probes with the adapter and the refitted gate; **adopt** both (``[generation]
   adapter = "adapters/tune-<time>"`` and ``[gate] fitted``, one config write) only when facts rose and
   unknown F1 did not fall beyond the tolerance. The table and the decision go to the adapter manifest
   (``kb_adapter.json`` ``metrics.tune``) and ``tune_report.json``; a rejected adapter stays on disk,
   unused.
"""

from .run import REPORT_FILE, TuneConfig, TuneReport, tune

__all__ = ["REPORT_FILE", "TuneConfig", "TuneReport", "tune"]
