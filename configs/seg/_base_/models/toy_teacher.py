# The toy world's tiny CLIP teacher (distill.toy.ensure_toy_teacher); placeholders filled by the tools.
# The ResNet teacher (crop top-1 ~90%) evaluated densely at output stride 16 (MaskCLIP's r50dc5 setting):
# toy images are 128 px, so the plain stride-32 grid would be 4x4. The toy ViT's value path does not
# localize (measured ~4% mIoU vs ~7% here; the README's toy-world section has the table).
toy_world = dict(arch="resnet")
teacher = dict(
    type="clip",
    model_name="<toy_teacher_model>",
    pretrained="<toy_teacher_checkpoint>",
    model_config="<toy_teacher_config>",
    dense_output_stride=16,
)
text_templates = "simple"
# text names of the labels in label order (label 0 = background), as in seg/classes.json.
shape_names = [
    "circle",
    "square",
    "triangle",
    "star",
    "ring",
    "cross",
    "heart",
    "arrow",
    "crescent",
    "bolt",
    "hourglass",
    "tee",
]
class_names = [
    "empty background"
] + shape_names  # the toy teacher saw 'a photo of an empty background.'
unseen_ids = [9, 10, 11, 12]
