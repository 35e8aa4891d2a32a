"""Typed errors with one-line messages a user can act on."""

from __future__ import annotations


class KBError(Exception):
    """Base class of every error raised by kb_assistant."""


class ConfigError(KBError, ValueError):
    """A configuration value is invalid (the message names the field and allowed values)."""


class LoaderError(KBError):
    """A file could not be turned into documents; ``str(err)`` is the one-line reason."""


class UnsupportedFormat(LoaderError):
    """No loader handles this file type."""


class CorruptFile(LoaderError):
    """The file is damaged or is not what its extension says."""


class EncryptedFile(LoaderError):
    """The file is password-protected."""


class EmptyFile(LoaderError):
    """The file holds no extractable text."""


class FileTooLarge(LoaderError):
    """The file exceeds the configured size limit."""


class IndexVersionError(KBError):
    """The knowledge base was written by a newer format or a different embedding model."""


class ModelNotFound(KBError):
    """A model path is missing and no embedded default could be found."""


class AccessDenied(KBError):
    """The caller's groups do not allow this operation."""


class GeneratorUnavailable(KBError):
    """The generator could not answer (a remote server refused, timed out or failed); the query engine
    answers extractively instead."""
