"""Input preprocessing options (SPEC §6): each produces the transform it names."""
import numpy as np
import pytest
import torch

from convfeat.models import input as pp
from convfeat.models.input import InputConfig, InputTransform

# IEC 61672-1:2003 Table 3, A-weighting (dB) at nominal frequencies; the table
# rounds to 0.1 dB (the nominal frequencies are themselves rounded, hence 0.15).
IEC_TABLE = {10: -70.4, 20: -50.5, 31.5: -39.4, 63: -26.2, 100: -19.1, 125: -16.1, 250: -8.6,
             500: -3.2, 1000: 0.0, 2000: 1.2, 4000: 1.0, 8000: -1.1, 16000: -6.6}


def test_a_weighting_matches_iec_table():
    f = np.array(list(IEC_TABLE))
    got = pp.a_weighting_db(f)
    np.testing.assert_allclose(got, list(IEC_TABLE.values()), atol=0.15)
    assert abs(pp.a_weighting_db(1000.0)) < 1e-3          # normalised at 1 kHz
    # the curve peaks near 2.5 kHz at about +1.27 dB
    grid = np.linspace(1000, 6000, 5001)
    assert 2300 < grid[np.argmax(pp.a_weighting_db(grid))] < 2700


def test_band_centres_are_slaney_mel_points():
    # Independent reference: the Slaney (Auditory Toolbox) mel scale, linear at
    # 200/3 Hz per mel below 1 kHz (15 mels), logarithmic above with 27 mels per
    # factor 6.4; 98 points equally spaced in mel from 0 to 6000 Hz, inner 96.
    def to_mel(f):
        return f / (200 / 3) if f < 1000 else 15 + 27 * np.log(f / 1000) / np.log(6.4)

    def to_hz(m):
        return np.where(m < 15, m * 200 / 3, 1000 * 6.4 ** ((m - 15) / 27))

    expect = to_hz(np.linspace(to_mel(0.0), to_mel(6000.0), 98))[1:-1]
    got = pp.mel_band_centres()
    assert got.shape == (96,)
    np.testing.assert_allclose(got, expect, rtol=1e-9)
    assert 0 < got[0] < 40 and 5700 < got[-1] < 6000


def _mel(seed=0, n=3, frames=50):
    rng = np.random.default_rng(seed)
    # skewed, band-dependent magnitudes, like real mel power
    scale = np.logspace(0, -6, 96)[:, None]
    return torch.from_numpy((rng.exponential(size=(n, 1, 96, frames)) * scale).astype(np.float32))


def test_log_and_linear_magnitude():
    p = _mel()
    t_log = InputTransform(InputConfig("log", "none", standardize=False))
    t_lin = InputTransform(InputConfig("linear", "none", standardize=False))
    np.testing.assert_allclose(t_log(p).numpy(), 10 * np.log10(np.maximum(p.numpy(), 1e-10)), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(t_lin(p).numpy(), p.numpy())


def test_a_weighting_applied_per_band_in_db_and_as_power_gain():
    p = _mel()
    a = pp.a_weighting_db(pp.mel_band_centres())[None, None, :, None]
    log_w = InputTransform(InputConfig("log", "a-weighting", standardize=False))(p).numpy()
    np.testing.assert_allclose(log_w, 10 * np.log10(np.maximum(p.numpy(), 1e-10)) + a, rtol=1e-5, atol=1e-3)
    lin_w = InputTransform(InputConfig("linear", "a-weighting", standardize=False))(p).numpy()
    np.testing.assert_allclose(lin_w, p.numpy() * 10 ** (a / 10), rtol=1e-4)
    # the lowest band (~31 Hz) is attenuated by tens of dB, a ~2.5 kHz band lifted
    assert a[0, 0, 0, 0] < -30 and a[0, 0, :, 0].max() > 1.0


def test_per_frequency_standardisation_zero_mean_unit_std_per_band():
    train = [_mel(s) for s in range(4)]
    t = InputTransform(InputConfig("log", "per-frequency", standardize=False)).fit(train)
    z = torch.cat([t(x) for x in train]).numpy()          # (12, 1, 96, frames)
    per_band = z.transpose(2, 0, 1, 3).reshape(96, -1)
    np.testing.assert_allclose(per_band.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(per_band.std(axis=1), 1.0, atol=1e-4)
    # statistics are those of the log magnitude, computed independently here
    db = 10 * np.log10(np.maximum(np.concatenate([x.numpy() for x in train]), 1e-10))
    np.testing.assert_allclose(t.band_statistics()["mean"], db.transpose(2, 0, 1, 3).reshape(96, -1).mean(1),
                               rtol=1e-5, atol=1e-4)


def test_per_frequency_needs_fit():
    with pytest.raises(RuntimeError, match="fit"):
        InputTransform(InputConfig("log", "per-frequency"))(_mel())


def test_excerpt_standardisation_and_scaling():
    p = _mel(n=2)
    z1 = InputTransform(InputConfig("linear", "none", standardize=True, scale=1.0))(p).numpy()
    z10 = InputTransform(InputConfig("linear", "none", standardize=True, scale=10.0))(p).numpy()
    for k in range(2):
        assert abs(z1[k].mean()) < 1e-5 and abs(z1[k].std() - 1) < 1e-4
    np.testing.assert_allclose(z10, 10 * z1, rtol=1e-6)
    # excerpt standardisation is per excerpt: scaling one clip's audio power does not change it
    p2 = p.clone()
    p2[1] *= 100.0
    z2 = InputTransform(InputConfig("log", "none"))(p2).numpy()
    np.testing.assert_allclose(z2[1], InputTransform(InputConfig("log", "none"))(p).numpy()[1], atol=1e-4)


def test_study_has_twelve_distinct_configurations():
    cfgs = pp.study_configs()
    assert len(cfgs) == 12 and len({c.name for c in cfgs}) == 12
    assert all(c.standardize for c in cfgs)
    assert {c.scale for c in cfgs} == {1.0, 10.0}


@pytest.mark.parametrize("bad", [dict(magnitude="sqrt"), dict(weighting="b-weighting"), dict(scale=0)])
def test_bad_config_rejected(bad):
    with pytest.raises(ValueError):
        InputConfig(**bad)
