"""Face-recognition backbones and their cost: iresnet family, MobileFaceNet (``mbf``, ``y2``),
the challenge paper's light MobileNet (``mnet_lfr``), FLOPs/MACs counter.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from arclab.models.embed import embed_images, extract_embeddings
from arclab.models.flops import (
    TRACK_LIMITS,
    backbone_costs,
    check_track,
    count_flops,
    track_margins,
)
from arclab.models.iresnet import IRESNET_LAYERS, iresnet
from arclab.models.mobilefacenet import mobilefacenet, y2
from arclab.models.mobilenet_lfr import mnet_lfr
from arclab.models.registry import MODEL_NAMES, get_model
from arclab.models.weights import load_backbone_weights

__all__ = ["IRESNET_LAYERS", "MODEL_NAMES", "TRACK_LIMITS", "backbone_costs", "check_track",
           "count_flops", "track_margins",
           "embed_images", "extract_embeddings", "get_model", "iresnet", "load_backbone_weights",
           "mnet_lfr",
           "mobilefacenet", "y2"]
