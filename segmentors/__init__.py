"""MMSegmentation plug-ins of ovdistill.

Importing this package registers, in MMSeg's registries (``mmseg.registry``):

* MODELS: ``MaskCLIPSegmentor`` (zero-shot teacher), ``MaskCLIPPlusSegmentor`` (pseudo-label student),
  text-classifier heads ``TextFCNHead``, ``TextDeepLabV2Head``, ``TextDepthwiseSeparableASPPHead``, ``LSegHead``;
* DATASETS: ``ToySegDataset``, ``PascalVOCDataset20`` (VOC, background ignored);
* TRANSFORMS: ``ValidateSegMap``;  METRICS: ``OVSegMetric``.

Configs load it with ``custom_imports = dict(imports=['segmentors'], allow_failed_imports=False)``.
"""

from .datasets import PascalVOCDataset20, ToySegDataset
from .heads import (
    LSegHead,
    TextClassifierMixin,
    TextDeepLabV2Head,
    TextDepthwiseSeparableASPPHead,
    TextFCNHead,
)
from .maskclip import MaskCLIPSegmentor
from .maskclip_plus import MaskCLIPPlusSegmentor, pseudo_targets
from .metrics import OVSegMetric
from .transforms import ValidateSegMap

__all__ = [
    "ToySegDataset",
    "PascalVOCDataset20",
    "LSegHead",
    "TextClassifierMixin",
    "TextDeepLabV2Head",
    "TextDepthwiseSeparableASPPHead",
    "TextFCNHead",
    "MaskCLIPSegmentor",
    "MaskCLIPPlusSegmentor",
    "pseudo_targets",
    "OVSegMetric",
    "ValidateSegMap",
]
