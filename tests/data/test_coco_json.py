"""wilddet.data.coco: OID <-> COCO / LVIS mappings (hand-worked), round trips, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from wilddet.data.coco import convert as conv
from wilddet.data.coco.image_sizes import sizes_from_folder
from wilddet.data.coco.json_io import read_ground_truth, read_results, validate_ground_truth
from wilddet.data.coco.to_oid import coco_to_oid
from wilddet.errors import InputError

BOX_HEADER = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
              "IsGroupOf,IsDepiction,IsInside\n")
HIERARCHY = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "/m/animal", "Subcategory": [{"LabelName": "/m/dog"}, {"LabelName": "/m/cat"}]},
    {"LabelName": "/m/car"}]}


@pytest.fixture()
def oid(tmp_path):
    """Two images with boxes (imgB first), one image only in the labels file."""
    d = tmp_path / "oid"
    d.mkdir()
    (d / "classes.csv").write_text("/m/animal,Animal\n/m/dog,Dog\n/m/cat,Cat\n/m/car,\"Car, red\"\n")
    (d / "boxes.csv").write_text(BOX_HEADER + "imgB,xclick,/m/dog,1,0.1,0.5,0.2,0.6,1,0,0,0,0\nimgB,activemil,/m/car,1,0.0,1.0,0.0,1.0,0,1,1,1,-1\nimgA,xclick,/m/dog,1,0.25,0.75,0.125,0.375,0,0,0,0,1\nimgB,xclick,/m/dog,1,0.3,0.4,0.3,0.4,0,0,0,0,0" + "\n")
    (d / "labels.csv").write_text("ImageID,Source,LabelName,Confidence\n" + "imgB,verification,/m/dog,1\nimgB,verification,/m/cat,1\nimgA,crowdsource-verification,/m/car,0\nimgC,verification,/m/cat,0\nimgC,verification,/m/animal,1" + "\n")
    (d / "hierarchy.json").write_text(json.dumps(HIERARCHY))
    (d / "sizes.csv").write_text("ImageID,width,height\nimgA,400,200\nimgB,100,50\nimgC,30,40\n"
                                 "unused,1,1\n")
    return d


def _to_json(oid, tmp_path, kind):
    out = tmp_path / f"gt-{kind}.json"
    conv.oid_files_to_coco(oid / "boxes.csv", oid / "classes.csv", out, kind=kind,
                           image_labels=oid / "labels.csv", hierarchy=oid / "hierarchy.json",
                           image_sizes=oid / "sizes.csv")
    return out, json.loads(out.read_text())


def test_oid_to_coco_mapping_by_hand(oid, tmp_path):
    _, doc = _to_json(oid, tmp_path, "coco")
    assert [(im["id"], im["oid_image_id"], im["file_name"], im["width"], im["height"])
            for im in doc["images"]] == [(1, "imgB", "imgB.jpg", 100, 50),
                                         (2, "imgA", "imgA.jpg", 400, 200),
                                         (3, "imgC", "imgC.jpg", 30, 40)]
    assert [(c["id"], c["name"], c["oid_label"], c["supercategory"]) for c in doc["categories"]] \
        == [(1, "Animal", "/m/animal", "none"), (2, "Dog", "/m/dog", "Animal"),
            (3, "Cat", "/m/cat", "Animal"), (4, "Car, red", "/m/car", "none")]
    a = doc["annotations"]
    assert [(x["id"], x["image_id"], x["category_id"], x["iscrowd"]) for x in a] == \
        [(1, 1, 2, 0), (2, 1, 4, 1), (3, 2, 2, 0), (4, 1, 2, 0)]
    # bbox = [XMin*W, YMin*H, (XMax-XMin)*W, (YMax-YMin)*H] on imgB 100x50 and imgA 400x200
    np.testing.assert_allclose(a[0]["bbox"], [10, 10, 40, 20], atol=1e-9)
    np.testing.assert_allclose(a[2]["bbox"], [100, 25, 200, 50], atol=1e-9)
    assert a[2]["area"] == pytest.approx(200 * 50)
    assert a[1]["oid"] == {"Source": "activemil", "Confidence": 1, "IsOccluded": 0,
                           "IsTruncated": 1, "IsDepiction": 1, "IsInside": -1}
    assert doc["oid_hierarchy"] == HIERARCHY
    assert {(r["image_id"], r["category_id"], r["confidence"]) for r in doc["oid_image_labels"]} \
        == {(1, 2, 1), (1, 3, 1), (2, 4, 0), (3, 3, 0), (3, 1, 1)}
    assert "neg_category_ids" not in doc["images"][0]


def test_oid_to_lvis_fields_by_hand(oid, tmp_path):
    _, doc = _to_json(oid, tmp_path, "lvis")
    im = {i["oid_image_id"]: i for i in doc["images"]}
    assert im["imgB"]["neg_category_ids"] == [] and im["imgB"]["not_exhaustive_category_ids"] == [3]
    assert im["imgA"]["neg_category_ids"] == [4] and im["imgA"]["not_exhaustive_category_ids"] == []
    assert im["imgC"]["neg_category_ids"] == [3] and im["imgC"]["not_exhaustive_category_ids"] == [1]
    cats = {c["name"]: c for c in doc["categories"]}
    # Dog: 3 boxes on 2 images; Car: 1 group-of box (counts once); Animal / Cat: none
    assert (cats["Dog"]["image_count"], cats["Dog"]["instance_count"]) == (2, 3)
    assert (cats["Car, red"]["image_count"], cats["Car, red"]["instance_count"]) == (1, 1)
    assert (cats["Cat"]["image_count"], cats["Cat"]["instance_count"]) == (0, 0)
    assert {c["frequency"] for c in doc["categories"]} == {"r"}
    validate_ground_truth(doc, "x.json", kind="lvis")  # lvis-api's required fields are there


def test_lvis_frequency_thresholds():
    from wilddet.data.coco.frequency import frequency_of

    assert frequency_of([0, 1, 10, 11, 100, 101]) == ["r", "r", "r", "c", "c", "f"]


def _rows(path, float_cols):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for c in float_cols:
        frame[c] = frame[c].astype(float).round(6).map(lambda v: f"{v:.6f}")
    return sorted(map(tuple, frame.itertuples(index=False))), list(frame.columns)


@pytest.mark.parametrize("kind", ["coco", "lvis"])
def test_round_trip_gives_the_same_files(oid, tmp_path, kind):
    gt, _ = _to_json(oid, tmp_path, kind)
    back = tmp_path / f"back-{kind}"
    conv.coco_file_to_oid(gt, back)
    coords = ("XMin", "XMax", "YMin", "YMax")
    assert _rows(back / "annotations-bbox.csv", coords) == _rows(oid / "boxes.csv", coords)
    assert _rows(back / "image-labels.csv", ()) == _rows(oid / "labels.csv", ())
    assert (back / "class-descriptions.csv").read_text() == (oid / "classes.csv").read_text()
    assert json.loads((back / "hierarchy.json").read_text()) == HIERARCHY


def test_coordinates_return_within_1e6(tmp_path):
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 0.5, (200, 2))
    hi = lo + rng.uniform(0, 0.5, (200, 2))
    (tmp_path / "c.csv").write_text("/m/a,A\n")
    lines = [f"im{i % 7},/m/a,{lo[i, 0]:.17g},{hi[i, 0]:.17g},{lo[i, 1]:.17g},{hi[i, 1]:.17g},0"
             for i in range(200)]
    (tmp_path / "b.csv").write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                                    + "\n".join(lines) + "\n")
    (tmp_path / "s.csv").write_text("ImageID,width,height\n" + "".join(
        f"im{i},{1000 + 37 * i},{777 + 11 * i}\n" for i in range(7)))
    conv.oid_files_to_coco(tmp_path / "b.csv", tmp_path / "c.csv", tmp_path / "g.json",
                           image_sizes=tmp_path / "s.csv")
    conv.coco_file_to_oid(tmp_path / "g.json", tmp_path / "back")
    back = pd.read_csv(tmp_path / "back" / "annotations-bbox.csv")
    np.testing.assert_allclose(back[["XMin", "XMax", "YMin", "YMax"]].to_numpy(),
                               np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], 1), atol=1e-6)


def test_sizes_from_image_headers_without_decoding(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "a.jpg", quality=90)
    Image.new("RGB", (17, 33)).save(tmp_path / "b.png")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "c.jpg").write_bytes(data[:len(data) // 3])  # header intact, pixels truncated
    sizes = sizes_from_folder(tmp_path, ["a", "b", "c"])
    assert sizes.file_names == ["a.jpg", "b.png", "c.jpg"]
    assert sizes.widths.tolist() == [64, 17, 64] and sizes.heights.tolist() == [48, 33, 48]
    with pytest.raises(InputError, match="image file not found"):
        sizes_from_folder(tmp_path, ["missing"])


def _plain_coco(tmp_path, lvis=False):
    doc = {"images": [{"id": 7, "file_name": "dir/p1.jpg", "width": 100, "height": 80},
                      {"id": 9, "file_name": "p2.png", "width": 50, "height": 50}],
           "categories": [{"id": 3, "name": "person"}, {"id": 1, "name": "bike"}],
           "annotations": [{"id": 5, "image_id": 7, "category_id": 3, "bbox": [10, 8, 50, 40],
                            "area": 1234.5, "iscrowd": 1},
                           {"id": 6, "image_id": 9, "category_id": 1, "bbox": [0, 0, 50, 50]}]}
    if lvis:
        doc["images"][0].update(neg_category_ids=[1], not_exhaustive_category_ids=[])
        doc["images"][1].update(neg_category_ids=[], not_exhaustive_category_ids=[3])
        for c in doc["categories"]:
            c["frequency"] = "f"
    path = tmp_path / ("plain-lvis.json" if lvis else "plain.json")
    path.write_text(json.dumps(doc))
    return path


def test_plain_coco_to_oid(tmp_path):
    gt = read_ground_truth(_plain_coco(tmp_path))
    assert gt.ann_area.tolist() == [1234.5, 2500.0]  # the file's area is kept
    t = coco_to_oid(gt)
    assert list(t.classes.labels) == ["bike", "person"]  # ascending category id
    assert list(t.boxes.image_ids) == ["p1", "p2"]
    np.testing.assert_allclose(t.boxes.boxes_norm[0], [0.1, 0.1, 0.6, 0.6], atol=1e-7)
    assert t.boxes.is_group_of.tolist() == [True, False]
    # COCO is exhaustive: p1 has person (1), bike verified absent (0); p2 the other way round
    rows = set(zip(t.image_labels.image_codes.tolist(), t.image_labels.label_codes.tolist(),
                   t.image_labels.confidence.tolist()))
    assert rows == {(0, 1, 1), (0, 0, 0), (1, 0, 1), (1, 1, 0)}
    assert t.box_attributes["IsOccluded"].tolist() == [-1, -1]


def test_plain_lvis_to_oid(tmp_path):
    t = coco_to_oid(read_ground_truth(_plain_coco(tmp_path, lvis=True)))
    rows = set(zip(t.image_labels.image_codes.tolist(), t.image_labels.label_codes.tolist(),
                   t.image_labels.confidence.tolist()))
    # p1: person box (1), bike negative (0); p2: bike box (1), person not exhaustive (1)
    assert rows == {(0, 1, 1), (0, 0, 0), (1, 0, 1), (1, 1, 1)}


def test_detections_round_trip(oid, tmp_path):
    gt, _doc = _to_json(oid, tmp_path, "coco")
    (tmp_path / "d.csv").write_text("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n"
                                    "imgA,/m/dog,0.9,0.25,0.75,0.125,0.375\n"
                                    "imgB,/m/car,0.25,0.1,0.2,0.3,0.9\n"
                                    "imgC,/m/cat,0.5,0.5,0.6,0.1,0.2\n")
    conv.detections_csv_to_results(tmp_path / "d.csv", gt, tmp_path / "r.json")
    res = json.loads((tmp_path / "r.json").read_text())
    assert res[0] == {"image_id": 2, "category_id": 2, "bbox": pytest.approx([100, 25, 200, 50]),
                      "score": pytest.approx(0.9)}
    conv.results_to_detections_csv(tmp_path / "r.json", gt, tmp_path / "back.csv")
    a = pd.read_csv(tmp_path / "d.csv")
    b = pd.read_csv(tmp_path / "back.csv")
    assert list(a.columns) == list(b.columns)
    assert a["ImageID"].tolist() == b["ImageID"].tolist()
    np.testing.assert_allclose(a.iloc[:, 2:].to_numpy(), b.iloc[:, 2:].to_numpy(), atol=1e-6)


# -- bad input: one line naming file and field; nothing written --------------------------------


def _gt_doc():
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]}


@pytest.mark.parametrize("edit, field, message", [
    (lambda d: d["annotations"][0].update(category_id=99), "annotations[0].category_id",
     "unknown category id 99"),
    (lambda d: d["annotations"][0].update(image_id=5), "annotations[0].image_id",
     "unknown image id 5"),
    (lambda d: d["annotations"][0].update(bbox=[6, 1, 5, 5]), "annotations[0].bbox",
     "> image width"),
    (lambda d: d["annotations"][0].update(bbox=[1, 1, 5]), "annotations[0].bbox", "4 finite"),
    (lambda d: d["images"][0].pop("width"), "images[0].width", "missing"),
    (lambda d: d.pop("categories"), "categories", "missing or not a list"),
    (lambda d: d["annotations"].append(dict(d["annotations"][0])), "annotations[1].id",
     "duplicate id 1"),
])
def test_bad_ground_truth(tmp_path, edit, field, message):
    doc = _gt_doc()
    edit(doc)
    path = tmp_path / "GT.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as e:
        conv.coco_file_to_oid(path, tmp_path / "out")
    assert str(e.value).startswith(f"{path}: {field}: ") and message in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_border_tolerance(tmp_path):
    doc = _gt_doc()
    doc["annotations"][0]["bbox"] = [5, 5, 5.0005, 5]  # 5e-4 px past the border: allowed
    validate_ground_truth(doc, "g.json")
    doc["annotations"][0]["bbox"] = [5, 5, 5.01, 5]
    with pytest.raises(InputError, match="bbox"):
        validate_ground_truth(doc, "g.json")


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "GT.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(InputError) as e:
        read_ground_truth(path)
    assert str(e.value).startswith(f"{path}:2: malformed json")


def test_results_on_unknown_image_are_an_error(tmp_path):
    gt_path = tmp_path / "GT.json"
    gt_path.write_text(json.dumps(_gt_doc()))
    gt = read_ground_truth(gt_path)
    res = tmp_path / "R.json"
    res.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1],
                                "score": 0.5},
                               {"image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1],
                                "score": 0.5}]))
    with pytest.raises(InputError, match=r"R.json: \[1\].image_id: unknown image .*42"):
        read_results(res, gt)
    with pytest.raises(InputError):
        conv.results_to_detections_csv(res, gt_path, tmp_path / "D.csv")
    assert not (tmp_path / "D.csv").exists()


def test_detection_of_unknown_image_is_an_error(oid, tmp_path):
    gt, _ = _to_json(oid, tmp_path, "coco")
    (tmp_path / "d.csv").write_text("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\n"
                                    "imgA,/m/dog,0.9,0.1,0.2,0.1,0.2\nnope,/m/dog,0.9,0,1,0,1\n")
    with pytest.raises(InputError) as e:
        conv.detections_csv_to_results(tmp_path / "d.csv", gt, tmp_path / "r.json")
    assert str(e.value) == f"{tmp_path / 'd.csv'}:3: ImageID: image 'nope' is not in the ground truth"
    assert not (tmp_path / "r.json").exists()


def test_missing_size_is_an_error_and_writes_nothing(oid, tmp_path):
    (oid / "sizes.csv").write_text("ImageID,width,height\nimgA,400,200\n")
    with pytest.raises(InputError, match="no size for image 'imgB'"):
        _to_json(oid, tmp_path, "coco")
    assert not (tmp_path / "gt-coco.json").exists()


def test_streamed_file_equals_the_in_memory_document(oid, tmp_path, monkeypatch):
    """Files are written in chunks of annotations (Open Images train size); the text parses to
    exactly the in-memory document, and chunk boundaries change nothing."""
    import wilddet.data.coco.from_oid as fo

    split = fo.read_oid_split(oid / "boxes.csv", oid / "classes.csv", oid / "labels.csv",
                              oid / "hierarchy.json")
    from wilddet.data.coco.image_sizes import sizes_from_csv

    sizes = sizes_from_csv(oid / "sizes.csv", split.image_ids)
    doc = fo.oid_to_coco(split, sizes, "lvis")
    monkeypatch.setattr(fo, "ANNOTATIONS_PER_CHUNK", 3)  # 4 boxes: chunks of 3 and 1
    out, written = _to_json(oid, tmp_path, "lvis")
    assert written == doc
    assert len(list(fo.annotation_chunks(split, sizes, 3))) == 2
    assert out.read_text().endswith("]}\n")
