"""wilddet.model: torchvision Faster R-CNN + FPN with a classifier head passed in.

Modules: ``choices`` (classifier names; torch-free), ``classifiers`` (the heads), ``roi_heads``
(``MultiLabelRoIHeads``), ``targets`` (multi-hot RoI targets), ``backbones``, ``build``
(``build_model``, ``set_test_scores``). Import from the modules: this package imports nothing,
so that ``wilddet.model.choices`` can be read without torch.
"""
