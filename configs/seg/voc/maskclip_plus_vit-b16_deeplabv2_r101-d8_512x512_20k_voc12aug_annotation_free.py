# Annotation-free MaskCLIP+ on PASCAL VOC: no ground truth is read in training; every pixel takes the teacher's
# argmax over all 21 classes (text "background" included), then the student's own predictions after 2k iterations.
_base_ = ["./maskclip_plus_vit-b16_deeplabv2_r101-d8_512x512_20k_voc12aug.py"]

model = dict(
    annotation_free=True,
    decode_head=dict(
        learned_background=False, num_classes=21, class_names={{_base_.voc_text_names}}
    ),
)
