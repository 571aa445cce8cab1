"""The front end's own Slaney mel scale and filterbank against librosa (the reference), and
the reason they exist: building a model does not import librosa's filters (scipy.signal)."""
import subprocess
import sys

import numpy as np
import pytest

from convfeat.models import frontend

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [
    (12000, 512, 96, 0.0, 6000.0),       # the convnet's front end
    (22050, 2048, 128, 0.0, 11025.0),
    (16000, 400, 40, 50.0, 7600.0),
    (44100, 1024, 64, 300.0, 16000.0),   # fmin above zero, fmax below Nyquist
])
def test_filterbank_equals_librosa(sr, n_fft, n_mels, fmin, fmax):
    got = frontend.mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    want = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False,
                               norm="slaney", dtype=np.float64).T.astype(np.float32)
    assert got.shape == (n_fft // 2 + 1, n_mels) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-7 * np.abs(want).max()


def test_mel_scale_equals_librosa_on_both_sides_of_the_break():
    f = np.array([0.0, 1.0, 440.0, 999.999, 1000.0, 1000.001, 4000.0, 22050.0])
    np.testing.assert_allclose(frontend.hz_to_mel(f), librosa.hz_to_mel(f, htk=False), rtol=1e-12, atol=1e-12)
    m = np.linspace(0.0, 60.0, 241)
    np.testing.assert_allclose(frontend.mel_to_hz(m), librosa.mel_to_hz(m, htk=False), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(frontend.mel_points(98, 0.0, 6000.0),
                               librosa.mel_frequencies(98, fmin=0.0, fmax=6000.0, htk=False), rtol=1e-12)


def test_building_a_model_does_not_import_librosa_filters():
    code = ("import sys; from convfeat.models import load_model; m = load_model('random'); "
            "print(int('scipy.signal' in sys.modules), int('librosa.filters' in sys.modules), "
            "float(m.frontend.mel_basis.sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["0", "0"]
    want = librosa.filters.mel(sr=12000, n_fft=512, n_mels=96, fmin=0.0, fmax=6000.0, dtype=np.float64)
    assert abs(float(out[2]) - float(want.astype(np.float32).sum(dtype=np.float64))) < 1e-4
