"""convfeat: transfer-learning features for music and audio.

A frozen music-tagging convnet (Choi et al. 2017) turns audio into a 160-d
multi-layer feature (32 average-pooled activations per conv block).

>>> import convfeat
>>> x = convfeat.embed(y, sr)            # (160,) float32
>>> convfeat.tag(y, sr, top_k=5)         # {'rock': 0.41, ...}
"""
from .api import embed, get_model, prepare, tag
from .models import MODEL_NAMES, load_model
from .models.tags import MSD_TAGS

__version__ = "0.1.0"

__all__ = ["embed", "tag", "prepare", "get_model", "load_model", "MODEL_NAMES", "MSD_TAGS",
           "__version__"]
