"""Every number and name that more than one room of convfeat needs, defined once.

Sources: ``../shared/SPEC.md`` §1 (the compact convnet and its front end) and §3
(the MFCC baseline).  Torch-free, so that any module may import it.
"""
from __future__ import annotations

# -- audio and the model window ------------------------------------------------
SAMPLE_RATE = 12000              # Hz: the convnet's input rate
WINDOW_SECONDS = 29.0            # the model input: the first 29 s of a clip in the study
WINDOW_SAMPLES = 348_000         # WINDOW_SECONDS at SAMPLE_RATE
SHORT_POLICIES = ("repeat", "pad")   # audio shorter than a window: tile it or zero-pad it
LONG_POLICIES = ("first", "mean")    # audio longer: first window only, or mean over windows
RESAMPLER_QUALITIES = ("LQ", "MQ", "HQ", "VHQ")   # soxr quality presets (bench/extract.py --resampler)
RESAMPLER_QUALITY = "HQ"         # the one every decode path uses (recorded in each set's front end)

# -- mel front end (SPEC §1) --------------------------------------------------------
N_FFT = 512
HOP = 256
N_MELS = 96
FMIN = 0.0                       # Hz
FMAX = 6000.0                    # Hz (Nyquist at 12 kHz)
AMIN = 1e-10                     # power floor before the log
DYNAMIC_RANGE_DB = 80.0          # dB below the reference maximum that are kept

# -- the multi-layer feature ------------------------------------------------------
LAYER_NAMES = ("layer1", "layer2", "layer3", "layer4", "layer5")
UNITS_PER_LAYER = 32             # channels of every conv block = values per block
MFCC_WIDTH = 120                 # 20 MFCCs x (value, delta, delta-delta) x (mean, std)

# -- batch normalisation policies (see models/compact.py) ----------------------------
BN_MODES = ("batch", "instance", "calibrated", "stored")
STUDY_BATCH_SIZE = 256           # clips per batch of the study's extraction (what bn_mode batch defaults to)

# -- inference precision (models/precision.py) ------------------------------------------
PRECISIONS = ("fp32", "bf16")    # fp32: the default, exact; bf16: autocast, opt-in (extract --precision)

# -- evaluation tasks -----------------------------------------------------------------
TASKS = ("classification", "regression", "multilabel")

# -- extraction on a Dask cluster (extraction/cluster.py) --------------------------------
ITEMS_PER_TASK = 200             # items per Dask task; each task writes one part file
CLUSTER_CONNECT_TIMEOUT = 3.0    # seconds allowed to reach a Dask scheduler before giving up
