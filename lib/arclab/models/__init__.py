"""Face-recognition backbones and their cost: iresnet family, FLOPs/MACs counter.

Taught in: notebooks/04_training_a_face_model.ipynb (planned)
"""

from arclab.models.embed import extract_embeddings
from arclab.models.flops import check_track, count_flops
from arclab.models.iresnet import IRESNET_LAYERS, get_model, iresnet
from arclab.models.mobilefacenet import mobilefacenet

__all__ = ["IRESNET_LAYERS", "check_track", "count_flops", "extract_embeddings", "get_model",
           "iresnet", "mobilefacenet"]
