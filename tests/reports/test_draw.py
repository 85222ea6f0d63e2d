"""Detection pictures: score threshold, labels, one colour per class, atomic PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from wilddet.reports.draw import Panel, class_colour, draw_detections_vs_truth, draw_panel


def test_panel_draws_only_boxes_above_threshold_with_names_and_scores():
    image = torch.rand(3, 40, 60)
    panel = Panel("dets", np.array([[1, 2, 10, 12], [5, 5, 30, 30], [0, 0, 59, 39]], np.float32),
                  ["Cat", "Dog", "Cat"], np.array([0.9, 0.3, 0.5], np.float32))
    fig, ax = plt.subplots()
    draw_panel(ax, image, panel, score_thresh=0.5)
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["Cat 0.50", "Cat 0.90"] and len(ax.patches) == 2
    edge = {tuple(np.round(p.get_edgecolor()[:3], 4)) for p in ax.patches}
    assert edge == {tuple(np.round(class_colour("Cat"), 4))}
    rect = max(ax.patches, key=lambda p: p.get_width())
    assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (0, 0, 59, 39)
    plt.close(fig)


def test_truth_panel_draws_every_box_and_the_figure_is_a_png(tmp_path):
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    truth = Panel("ground truth", np.array([[2, 2, 20, 20]], np.float32), ["Cat"])
    dets = Panel("detections", np.zeros((0, 4), np.float32), [], np.zeros(0, np.float32))
    path = draw_detections_vs_truth(tmp_path / "d.png", [image, image], [truth, truth],
                                    [dets, dets])
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (780, 780)  # 2 x 2 panels of 2.6 in at 150 dpi
    assert [p.name for p in tmp_path.iterdir()] == ["d.png"]
