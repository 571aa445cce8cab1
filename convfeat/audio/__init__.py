"""Audio in: decoding files (``io``), the length policy that cuts signals into model windows
(``windows``) and the one path from a file or an array to model windows (``decode``).
Pure NumPy, torch-free, never imports :mod:`convfeat.models`."""
from .decode import read_signal, read_windows, to_windows
from .io import (AUDIO_EXTENSIONS, MAX_CHANNELS, SAMPLE_RATE_LIMITS, AudioDecodeError, all_finite, check_header,
                 describe_peak, load, mixdown, quiet_stderr, read_resampled, resample, signal_peak, to_mono)
from .windows import LONG_POLICIES, SHORT_POLICIES, Policy, fit_window, split_windows

__all__ = ["AUDIO_EXTENSIONS", "MAX_CHANNELS", "SAMPLE_RATE_LIMITS", "AudioDecodeError", "all_finite", "check_header",
           "describe_peak", "load", "mixdown", "quiet_stderr", "read_resampled", "resample", "signal_peak", "to_mono",
           "LONG_POLICIES", "SHORT_POLICIES", "Policy", "fit_window", "split_windows",
           "read_signal", "read_windows", "to_windows"]
