"""Open-vocabulary inference with a trained ViLD or BARON detector: any vocabulary, eager or exported weights.

    predictor = OVPredictor(cfg, "output/toy/vild/model_final.pth", vocabulary=["cat", "dog", "red star"])
    instances = predictor(image)              # [H, W, 3] uint8 RGB -> Detectron2 Instances, original pixels
    predictor.set_vocabulary("circle, star")  # new classes, no weight change

Vocabulary embeddings (:class:`VocabularyEncoder`) are rows of the model's training classifier file
when a name is in it, otherwise computed by the configured teacher's text encoder (prompt ensemble
``MODEL.VILD.TEACHER.TEMPLATES``) and cached under ``$OVDISTILL_CACHE/text_classifiers`` keyed by
the model's teacher fingerprint, so a vocabulary is encoded once and later runs load no teacher. The
teacher must be the one the model was trained with (same fingerprint), else its embeddings would live
in another space: that is an error.

Modules: :mod:`.vocabulary` (``parse_vocabulary``), :mod:`.inference_config`
(``load_inference_config``: files recorded beside the weights, then ``detectors.prepare``),
:mod:`.checkpoint` (``load_checkpoint``), :mod:`.encoder` (``VocabularyEncoder``),
:mod:`.ov_predictor` (``OVPredictor``); images are read by ``detectors.data.read_image`` (the data
mapper's reader) and resized by ``detectors.data.prepare_image`` (the exported runtime's resize).
"""

from ..data.images import IMAGE_SUFFIXES, read_image
from .checkpoint import load_checkpoint
from .encoder import VocabularyEncoder
from .inference_config import load_inference_config, recorded_file
from .ov_predictor import OVPredictor
from .vocabulary import parse_vocabulary

__all__ = [
    "IMAGE_SUFFIXES",
    "parse_vocabulary",
    "read_image",
    "load_inference_config",
    "recorded_file",
    "load_checkpoint",
    "VocabularyEncoder",
    "OVPredictor",
]
