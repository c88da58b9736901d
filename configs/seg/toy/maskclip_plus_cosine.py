# Ablation of maskclip_plus.py (tools/toy_tables.py --methods maskclip_plus_cosine): ovdistill's
# earlier head instead of the official MaskCLIP+ one. The branch features (conv + BN + ReLU, summed,
# so non-negative) go through a learned 1x1 projection to the text dimension and are L2-normalised;
# logits = cosine / 0.07. Everything else (teacher, pseudo-labels, schedule, dropout 0) as
# maskclip_plus.py. Question: is the official dot-product head what drops the toy unseen mIoU?
_base_ = "./maskclip_plus.py"

model = dict(decode_head=dict(logits="cosine", channels=128))
