"""Adapters to other frameworks (optional dependencies, imported only when used)."""
