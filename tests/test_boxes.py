"""boxes.py: normalized <-> pixel conversions against hand-worked values, round trips (numpy and
torch, float32 xyxy and float64 COCO xywh) and clipping."""

import numpy as np
import pytest
import torch

from wilddet.boxes import norm_to_xywh_px, norm_to_xyxy_px, xywh_px_to_norm, xyxy_px_to_norm


def random_norm_boxes(n: int, seed: int = 0) -> np.ndarray:
    """[n, 4] valid normalized (xmin, ymin, xmax, ymax)."""
    rng = np.random.default_rng(seed)
    lo = rng.uniform(0, 0.9, (n, 2))
    hi = lo + rng.uniform(0.0, 1.0, (n, 2)) * (1 - lo)
    return np.concatenate([lo, hi], axis=1).astype(np.float32)  # [n, 4] xmin ymin xmax ymax


def test_hand_worked_box_on_a_wide_image():
    # (xmin, ymin, xmax, ymax) = (0.1, 0.2, 0.5, 0.8) on an image 100 px high, 200 px wide
    norm = np.array([[0.1, 0.2, 0.5, 0.8]], np.float32)
    np.testing.assert_allclose(norm_to_xyxy_px(norm, 100, 200), [[20, 20, 100, 80]], rtol=1e-6)
    np.testing.assert_allclose(norm_to_xywh_px([[0.1, 0.2, 0.5, 0.8]], 200, 100),
                               [[20, 20, 80, 60]], rtol=1e-12)
    np.testing.assert_allclose(xyxy_px_to_norm(np.array([[20, 20, 100, 80]]), 100, 200), norm,
                               rtol=1e-6)


@pytest.mark.parametrize("height,width", [(1, 1), (480, 640), (1024, 333)])
def test_xyxy_round_trip_numpy_and_torch(height, width):
    norm = random_norm_boxes(200)
    px = norm_to_xyxy_px(norm, height, width)
    assert isinstance(px, np.ndarray) and px.dtype == np.float32 and px.shape == (200, 4)
    np.testing.assert_allclose(xyxy_px_to_norm(px, height, width), norm, atol=1e-6)
    tnorm = torch.from_numpy(norm).double()  # any float dtype in, float32 out
    tpx = norm_to_xyxy_px(tnorm, height, width)
    assert isinstance(tpx, torch.Tensor) and tpx.dtype == torch.float32
    np.testing.assert_allclose(tpx.numpy(), px, rtol=1e-6)  # torch and numpy agree
    back = xyxy_px_to_norm(tpx, height, width)
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), norm, atol=1e-6)


def test_xyxy_px_outside_the_image_is_clipped_unless_asked_not_to():
    px = np.array([[-10.0, 5.0, 250.0, 120.0]])  # image 100 x 200
    np.testing.assert_allclose(xyxy_px_to_norm(px, 100, 200), [[0, 0.05, 1, 1]], rtol=1e-6)
    np.testing.assert_allclose(xyxy_px_to_norm(px, 100, 200, clip=False),
                               [[-0.05, 0.05, 1.25, 1.2]], rtol=1e-6)
    t = xyxy_px_to_norm(torch.tensor(px), 100, 200)
    assert float(t.min()) == 0.0 and float(t.max()) == 1.0


def test_xywh_round_trip_with_per_row_image_sizes():
    norm = random_norm_boxes(100, seed=1).astype(np.float64)
    rng = np.random.default_rng(2)
    widths, heights = rng.integers(1, 5000, 100), rng.integers(1, 5000, 100)
    xywh = norm_to_xywh_px(norm, widths, heights)
    assert xywh.dtype == np.float64 and (xywh[:, 2:] >= 0).all()
    np.testing.assert_allclose(xywh[:, 0], norm[:, 0] * widths)        # x = xmin W
    np.testing.assert_allclose(xywh[:, 3], (norm[:, 3] - norm[:, 1]) * heights)  # h
    np.testing.assert_allclose(xywh_px_to_norm(xywh, widths, heights), norm, atol=1e-12)


def test_empty_inputs_keep_their_shape():
    assert norm_to_xyxy_px(np.zeros((0, 4)), 10, 10).shape == (0, 4)
    assert xyxy_px_to_norm(torch.zeros(0, 4), 10, 10).shape == (0, 4)
    assert xywh_px_to_norm(np.zeros((0, 4)), 10, 10).shape == (0, 4)
