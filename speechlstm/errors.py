"""Typed errors: every failure a user can cause maps to one of these."""


class SpeechLSTMError(Exception):
    """Base class for all errors raised by speechlstm."""


class ConfigError(SpeechLSTMError, ValueError):
    """A configuration has unknown keys or invalid values."""


class AudioError(SpeechLSTMError, ValueError):
    """Audio could not be read or is not usable (empty, NaN, unknown format)."""


class CheckpointError(SpeechLSTMError):
    """A checkpoint file is missing, corrupt, unsafe or of an unknown format."""


class DataError(SpeechLSTMError):
    """A dataset directory is missing or has an unexpected layout."""


class EnrollError(SpeechLSTMError, ValueError):
    """Recordings that cannot make an enrolled word: too few, silent, of different words,
    or of a word too close to one the model already knows."""
