"""speechlstm: speech-command recognition with a bidirectional LSTM on MFCCs.

    >>> from speechlstm import Recognizer
    >>> Recognizer.from_checkpoint().predict_file("yes.wav").label
    'yes'
"""

from .audio import read_audio
from .checkpoint import load_checkpoint
from .errors import AudioError, CheckpointError, ConfigError, DataError, SpeechLSTMError
from .infer import Prediction, Recognizer
from .stream import Detection, StreamingRecognizer

__version__ = "0.1.0"
__all__ = ["Recognizer", "Prediction", "StreamingRecognizer", "Detection", "read_audio", "load_checkpoint",
           "SpeechLSTMError", "AudioError", "CheckpointError", "ConfigError", "DataError", "__version__"]
