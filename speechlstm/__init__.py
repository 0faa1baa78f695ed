"""speechlstm: speech-command recognition with a bidirectional LSTM on MFCCs.

    >>> from speechlstm import Recognizer
    >>> Recognizer.from_checkpoint().predict_file("yes.wav").label
    'yes'

The names below load on first use, so ``import speechlstm`` (and the command
line's ``speechlstm doctor``) works before torch is even imported.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"
_WHERE = {"Recognizer": "infer", "Prediction": "infer", "StreamingRecognizer": "stream", "Detection": "stream",
          "read_audio": "audio", "load_checkpoint": "checkpoint", "SpeechLSTMError": "errors",
          "AudioError": "errors", "CheckpointError": "errors", "ConfigError": "errors", "DataError": "errors",
          "EnrollError": "errors", "WordSpotter": "enroll"}
__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
