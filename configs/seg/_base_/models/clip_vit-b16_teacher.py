# Teacher: OpenAI CLIP ViT-B/16 through open_clip (distill.teachers.ClipTeacher); MaskCLIP's 85 prompt templates.
teacher = dict(
    type="clip", model_name="ViT-B-16", pretrained="openai", model_config=None, precision="fp32"
)
text_templates = "maskclip"
