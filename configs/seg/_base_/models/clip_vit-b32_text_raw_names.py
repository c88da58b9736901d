# LSeg's text side (isl-org/lang-seg@bb00b21 modules/models/lseg_net.py, lseg_vit.py): the CLIP
# ViT-B/32 text encoder (clip.load("ViT-B/32") for the ViT-L/16 LSeg) on the raw label names,
# clip.tokenize(self.labels), no prompt templates: the single template "{}".
teacher = dict(
    type="clip", model_name="ViT-B-32", pretrained="openai", model_config=None, precision="fp32"
)
text_templates = ["{}"]
