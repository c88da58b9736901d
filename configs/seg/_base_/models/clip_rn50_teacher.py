# Teacher: OpenAI CLIP RN50 through open_clip (distill.teachers.ClipTeacher), dense at output stride
# 32 (the official ResNetClip), MaskCLIP's 85 prompt templates. The teacher of every official
# MaskCLIP+ zero-shot config (chongzhou96/MaskCLIP@245d31f
# configs/_base_/models/maskclip_plus_r50.py); its 1024-d text embeddings are also the student's
# classifier.
teacher = dict(
    type="clip", model_name="RN50", pretrained="openai", model_config=None, precision="fp32"
)
text_templates = "maskclip"
