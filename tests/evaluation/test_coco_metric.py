"""evaluation.coco_metric (faster-coco-eval) against pycocotools and lvis-api on the same data."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from wilddet.evaluation.coco_metric import (
    COCO_KEYS,
    LVIS_KEYS,
    Detections,
    evaluate_coco_style,
    top_per_image,
)

TOL = 1e-6


def _synthetic(seed: int, num_images: int = 24, num_cats: int = 5, lvis: bool = False,
               crowded_image_dets: int = 0):
    """A GT document and results of a noisy detector: jittered copies of GT boxes (some), plus
    random false positives; sizes spread over small / medium / large."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for i in range(1, num_images + 1):
        w, h = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": w, "height": h})
        for _ in range(int(rng.integers(0, 7))):
            bw, bh = float(rng.uniform(4, w / 2)), float(rng.uniform(4, h / 2))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            cat = int(rng.integers(1, num_cats + 1))
            crowd = int(rng.random() < 0.08)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat,
                         "bbox": [x, y, bw, bh], "area": bw * bh * float(rng.uniform(0.5, 1)),
                         "iscrowd": crowd})
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 0.1, 4) * [bw, bh, bw, bh]
                results.append({"image_id": i, "category_id": cat if rng.random() < 0.85 else
                                int(rng.integers(1, num_cats + 1)),
                                "bbox": [x + j[0], y + j[1], max(bw + j[2], 1), max(bh + j[3], 1)],
                                "score": float(rng.random())})
        extra = crowded_image_dets if i == 1 else int(rng.integers(0, 4))
        for _ in range(extra):
            bw, bh = float(rng.uniform(2, w / 3)), float(rng.uniform(2, h / 3))
            results.append({"image_id": i, "category_id": int(rng.integers(1, num_cats + 1)),
                            "bbox": [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)),
                                     bw, bh], "score": float(rng.random())})
    cats = [{"id": k, "name": f"cat{k}", "supercategory": "none"} for k in range(1, num_cats + 1)]
    doc = {"images": images, "annotations": anns, "categories": cats}
    if lvis:
        present = {}
        for a in anns:
            present.setdefault(a["image_id"], set()).add(a["category_id"])
        for im in images:
            have = present.get(im["id"], set())
            absent = [k for k in range(1, num_cats + 1) if k not in have]
            rng.shuffle(absent)
            im["neg_category_ids"] = sorted(int(k) for k in absent[:2])
            im["not_exhaustive_category_ids"] = sorted(int(k) for k in have if rng.random() < 0.3)
        for c, freq in zip(cats, "rcfcfrcf"):
            c["frequency"] = freq
    return doc, results


def _detections(results) -> Detections:
    return Detections(np.asarray([r["image_id"] for r in results], np.int64),
                      np.asarray([r["category_id"] for r in results], np.int64),
                      np.asarray([r["bbox"] for r in results], np.float64).reshape(-1, 4),
                      np.asarray([r["score"] for r in results], np.float64))


def _pycocotools(doc, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(doc)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _lvis_api(doc, results, tmp_path, monkeypatch):
    monkeypatch.setattr(np, "float", float, raising=False)  # lvis-api still uses np.float
    from lvis import LVIS, LVISEval, LVISResults

    path = tmp_path / "lvis_gt.json"
    path.write_text(json.dumps(doc))
    gt = LVIS(str(path))
    dt = LVISResults(gt, copy.deepcopy(results), max_dets=300)
    ev = LVISEval(gt, dt, "bbox")
    ev.run()
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_equals_pycocotools(seed):
    doc, results = _synthetic(seed)
    ours = evaluate_coco_style(copy.deepcopy(doc), _detections(results), "coco")
    ref = _pycocotools(doc, results)
    assert list(ours.summary) == list(COCO_KEYS)
    for key, value in zip(COCO_KEYS, ref.stats):
        assert ours.summary[key] == pytest.approx(value, abs=TOL), key
    prec = ref.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
    for k in range(prec.shape[2]):
        p = prec[:, :, k]
        expected = p[p > -1].mean() if (p > -1).any() else np.nan
        np.testing.assert_allclose(ours.per_class_ap[k], expected, atol=TOL)
    assert ours.num_gt.sum() == sum(1 for a in doc["annotations"] if not a["iscrowd"])
    assert ours.library.startswith("faster-coco-eval ")


def test_gt_document_is_not_modified():
    doc, results = _synthetic(3)
    before = copy.deepcopy(doc)
    evaluate_coco_style(doc, _detections(results), "coco")
    assert doc == before


@pytest.mark.parametrize("seed", [0, 4])
def test_lvis_equals_lvis_api_with_crowded_image(seed, tmp_path, monkeypatch):
    # image 1 holds > 300 detections: the per-image cap must match lvis-api's
    doc, results = _synthetic(seed, lvis=True, crowded_image_dets=420)
    assert sum(r["image_id"] == 1 for r in results) > 300
    ours = evaluate_coco_style(copy.deepcopy(doc), _detections(results), "lvis")
    ref = _lvis_api(doc, results, tmp_path, monkeypatch).get_results()
    assert list(ours.summary)[:len(LVIS_KEYS)] == list(LVIS_KEYS)
    names = {k: k for k in LVIS_KEYS} | {"AR300": "AR@300", "ARs300": "ARs@300",
                                         "ARm300": "ARm@300", "ARl300": "ARl@300"}
    for ours_key, ref_key in names.items():
        expected = ref[ref_key]
        got = ours.summary[ours_key]
        if expected == -1:
            assert got is None, ours_key
        else:
            assert got == pytest.approx(expected, abs=TOL), ours_key


def test_lvis_per_image_cap_keeps_the_300_best():
    _doc, results = _synthetic(5, lvis=True, crowded_image_dets=500)
    dets = _detections(results)
    keep = top_per_image(dets, 300)
    assert np.bincount(dets.image_ids[keep]).max() == 300
    # the kept rows are exactly the 300 best of image 1 and everything of the others
    on1 = np.flatnonzero(dets.image_ids == 1)
    best = on1[np.argsort(-dets.scores[on1], kind="stable")[:300]]
    np.testing.assert_array_equal(np.sort(keep[dets.image_ids[keep] == 1]), np.sort(best))
    assert (dets.image_ids[keep] != 1).sum() == (dets.image_ids != 1).sum()


def test_lvis_per_class_equals_lvis_api(tmp_path, monkeypatch):
    doc, results = _synthetic(6, lvis=True, crowded_image_dets=350)
    ours = evaluate_coco_style(copy.deepcopy(doc), _detections(results), "lvis")
    ev = _lvis_api(doc, results, tmp_path, monkeypatch)
    prec = ev.eval["precision"][:, :, :, 0]  # [T, R, K] area all
    for k in range(prec.shape[2]):
        p = prec[:, :, k]
        expected = p[p > -1].mean() if (p > -1).any() else np.nan
        np.testing.assert_allclose(ours.per_class_ap[k], expected, atol=TOL)


def test_no_output_printed(capfd):
    doc, results = _synthetic(7, lvis=True)
    evaluate_coco_style(copy.deepcopy(doc), _detections(results), "lvis")
    evaluate_coco_style(copy.deepcopy(doc), _detections(results), "coco")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_no_detections_gives_zero_ap():
    doc, _ = _synthetic(8)
    empty = Detections(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)),
                       np.zeros(0))
    r = evaluate_coco_style(doc, empty, "coco")
    assert r.summary["AP"] == 0.0 and r.num_detections.sum() == 0


@pytest.mark.parametrize("metric", ["coco", "lvis"])
def test_category_slices_give_the_same_numbers(metric, monkeypatch):
    """Evaluating the categories in slices (large data sets) changes nothing."""
    import wilddet.evaluation.coco_metric as cm

    doc, results = _synthetic(9, lvis=metric == "lvis", crowded_image_dets=320)
    whole = evaluate_coco_style(copy.deepcopy(doc), _detections(results), metric)
    monkeypatch.setattr(cm, "MAX_PAIRS_PER_PASS", 2 * len(doc["images"]))  # 2 per slice
    sliced = evaluate_coco_style(copy.deepcopy(doc), _detections(results), metric)
    assert sliced.summary == whole.summary
    np.testing.assert_array_equal(sliced.per_class_ap, whole.per_class_ap)
