"""Audio in: decoding files (``io``) and the length policy that cuts signals into model
windows (``windows``).  Pure NumPy, torch-free, never imports :mod:`convfeat.models`."""
from .io import (AUDIO_EXTENSIONS, AudioDecodeError, load, mixdown, read_resampled, resample,
                 to_mono)
from .windows import LONG_POLICIES, SHORT_POLICIES, Policy, fit_window, split_windows

__all__ = ["AUDIO_EXTENSIONS", "AudioDecodeError", "load", "mixdown", "read_resampled", "resample", "to_mono",
           "LONG_POLICIES", "SHORT_POLICIES", "Policy", "fit_window", "split_windows"]
