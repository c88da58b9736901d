# The toy world's tiny CLIP teacher (distill.toy.ensure_toy_teacher); placeholders filled by the tools.
toy_world = dict(arch='vit')
teacher = dict(
    type='clip',
    model_name='<toy_teacher_model>',
    pretrained='<toy_teacher_checkpoint>',
    model_config='<toy_teacher_config>')
text_templates = 'simple'
# text names of the labels in label order (label 0 = background), as in seg/classes.json.
shape_names = ['circle', 'square', 'triangle', 'star', 'ring', 'cross', 'heart', 'arrow',
               'crescent', 'bolt', 'hourglass', 'tee']
class_names = ['empty background'] + shape_names   # the toy teacher saw 'a photo of an empty background.'
unseen_ids = [9, 10, 11, 12]
