"""Export a ViLD or BARON detector to TorchScript and ONNX, its vocabulary baked in or an input.

* :mod:`.exportable` -- :class:`ExportableViLD` wraps an eager ``ViLDRCNN`` (or ``BaronRCNN``: the
  same inference path, its region embedding being the frozen text encoder of the pseudo words) and
  runs the model's own inference on one image (``preprocess_image``, backbone, RPN,
  ``ViLDROIHeads.box_inference``, ``detector_postprocess``), the cosine classifier scoring against
  the ``text_embeddings`` given to ``forward`` (or a baked buffer);
* :mod:`.exporters` -- :func:`export_detector` traces it (``torch.jit.trace``) and exports it to
  ONNX (opset 17, TorchScript-based exporter), writing the model card beside the files;
* :mod:`.model_card` -- ``model_card.json`` + ``MODEL_CARD.md`` (:func:`describe_model` of a run);
* :mod:`.runtime` -- :class:`ExportedDetector` loads either file, checks inputs against the model
  card and raises clear errors.

Exported graphs take one image ``[3, H, W]`` of any size (Detectron2's tracing-aware code keeps
the padding to the size divisibility, the anchors and the top-k sizes shape-dependent; ``H`` and
``W`` are dynamic ONNX axes) and any number of classes ``K``. Like the eager model's, their input
is the image after the test transform: :func:`prepare_image` (``detectors.data.resize``, shared
with the predictor) applies ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``.
"""

from ..data.resize import PreparedImage, prepare_image, rescale_boxes
from .exportable import ExportableViLD, baked_seen, check_embeddings
from .exporters import ONNX_OPSET, VOCAB_MODES, example_size, export_detector, export_onnx, trace
from .model_card import CARD_JSON, CARD_MD, describe_model, write_model_card
from .runtime import ExportedDetector

__all__ = [
    "ExportableViLD",
    "ExportedDetector",
    "export_detector",
    "prepare_image",
    "write_model_card",
    "describe_model",
    "check_embeddings",
    "example_size",
    "rescale_boxes",
    "VOCAB_MODES",
    "ONNX_OPSET",
    "PreparedImage",
    "baked_seen",
    "trace",
    "export_onnx",
    "CARD_JSON",
    "CARD_MD",
]
