import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, kb_assistant\n"
        "from kb_assistant import KnowledgeBase, KBConfig\n"
        "import kb_assistant.cli, kb_assistant.knowledge_base\n"
        "heavy = [m for m in ('torch', 'transformers', 'faiss', 'sentence_transformers')\n"
        "         if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported by `import kb_assistant`: {out.stdout}"


def test_version_and_public_api():
    import kb_assistant

    assert kb_assistant.__version__
    assert {"KnowledgeBase", "Hit", "IngestReport", "KBConfig"} <= set(kb_assistant.__all__)
