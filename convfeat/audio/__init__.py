"""Audio in: decoding files (``io``), the length policy that cuts signals into model windows
(``windows``) and the one path from a file or an array to model windows (``decode``).
Pure NumPy, torch-free, never imports :mod:`convfeat.models`."""
from .decode import read_signal, read_windows, to_windows
from .io import (AUDIO_EXTENSIONS, AudioDecodeError, load, mixdown, read_resampled, resample,
                 to_mono)
from .windows import LONG_POLICIES, SHORT_POLICIES, Policy, fit_window, split_windows

__all__ = ["AUDIO_EXTENSIONS", "AudioDecodeError", "load", "mixdown", "read_resampled", "resample", "to_mono",
           "LONG_POLICIES", "SHORT_POLICIES", "Policy", "fit_window", "split_windows",
           "read_signal", "read_windows", "to_windows"]
