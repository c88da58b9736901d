# Annotation-free MaskCLIP+ on the toy world: no ground truth in training; every pixel takes the toy teacher's
# argmax over all 13 classes (text 'empty background' included), then the student's own predictions.
_base_ = ["./maskclip_plus.py"]

model = dict(
    annotation_free=True,
    decode_head=dict(class_names={{_base_.class_names}}, learned_background=False),
)
