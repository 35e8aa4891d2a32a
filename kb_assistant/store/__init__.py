"""Storage of a knowledge base: SQLite docstore (truth), FAISS dense index and BM25 sparse index."""
