"""The paper's four label cases planted by `wilddet synth`, measured from the written files.

Every rate is an estimate from n Bernoulli trials; it must lie within 4 binomial standard
deviations, |p_hat - p| <= 4 sqrt(p (1 - p) / n) (a 1-in-15,000 band; the data are fixed by the
seed, so a pass is reproducible). Objects are rebuilt from the files alone: boxes of one image
with IoU > 0.9 are one object.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from wilddet.cli import app
from wilddet.data import hierarchy as hmod
from wilddet.data import oid_csv
from wilddet.data.synthetic import (
    SYNONYM_SHARES,
    SynthConfig,
    build_taxonomy,
    case_counts,
    read_planted_cases,
    write_dataset,
)
from wilddet.errors import InputError
from wilddet.stats.analysis import analyze_tables

CFG = SynthConfig(train_images=4000, val_images=150, classes=24, alpha=0.8, objects_per_image=3,
                  seed=5, co_label_groups=2, synonym_groups=2, explicit_duplicate_classes=2,
                  parent_label_classes=2, val_class_balance=15)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases") / "d"
    write_dataset(root, CFG, with_images=False)
    classes = oid_csv.read_classes(root / "class-descriptions.csv")
    return {"root": root, "classes": classes,
            "manifest": json.loads((root / "synth.json").read_text()),
            "boxes": oid_csv.read_boxes(root / "train-annotations-bbox.csv", classes)}


def _within(successes: int, n: int, p: float) -> bool:
    return n > 0 and abs(successes / n - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-12


def _objects(boxes) -> list[tuple[int, frozenset]]:
    """(image code, set of label codes) per object: boxes with IoU > 0.9 joined (brute force)."""
    out = []
    order = np.argsort(boxes.image_codes, kind="stable")
    cuts = np.flatnonzero(np.diff(boxes.image_codes[order])) + 1
    for rows in np.split(order, cuts):
        b = boxes.boxes_norm[rows].astype(np.float64)
        lo, hi = np.maximum(b[:, None, :2], b[None, :, :2]), np.minimum(b[:, None, 2:],
                                                                        b[None, :, 2:])
        inter = np.clip(hi - lo, 0, None).prod(axis=2)
        area = (b[:, 2:] - b[:, :2]).prod(axis=1)
        iou = inter / (area[:, None] + area[None, :] - inter)
        np.fill_diagonal(iou, 0)
        seen = np.zeros(len(rows), bool)
        for i in range(len(rows)):
            if seen[i]:
                continue
            members = np.flatnonzero(iou[i] > 0.9)
            seen[members] = seen[i] = True
            labels = frozenset(boxes.label_codes[rows[[i, *members]]].tolist())
            out.append((int(boxes.image_codes[rows[i]]), labels))
    return out


def _rate(objects, source: set, event) -> tuple[int, int]:
    """(events, trials): trials are the objects with a label in ``source``, events those of them
    whose label set satisfies ``event(labels)``."""
    trials = [labels for _, labels in objects if labels & source]
    return sum(bool(event(labels)) for labels in trials), len(trials)


def _two_labels(labels) -> bool:
    return len(labels) == 2


def test_manifest_lists_disjoint_cases(data):
    cases, classes = data["manifest"]["cases"], data["classes"]
    counts = case_counts(CFG)
    assert len(cases["co_label"]["pairs"]) == counts.co_label_groups == 2
    assert [len(g["classes"]) for g in cases["synonym"]["groups"]] == [2, 3]
    assert len(cases["explicit_duplicate"]["classes"]) == 2
    assert len(cases["parent_label"]["classes"]) == 2
    groups = read_planted_cases(data["root"] / "synth.json")
    leaf_groups = ["a_co_label", "b_explicit_duplicate", "c_parent_label", "d_synonym", "control"]
    leaves = [x for g in leaf_groups for x in groups[g]]
    assert len(leaves) == len(set(leaves))  # every leaf in at most one case
    assert not set(groups["b_parents"]) & set(groups["c_parents"])  # distinct shapes
    tax = build_taxonomy(CFG)
    for g in tax.synonym_groups:  # rendered identically
        assert len({(tax.leaf_styles[i].shape, tax.leaf_styles[i].texture,
                     tax.leaf_styles[i].hue) for i in g}) == 1
        assert len({tax.leaf_styles[i].name for i in g}) == len(g)
    for a, b in tax.co_label_pairs:  # unrelated: different families, A the more frequent look
        h = hmod.read_hierarchy(data["root"] / "hierarchy.json", classes)
        top = [int(h.ancestors[tax.leaf_codes[x]][np.argmin(h.depth[h.ancestors[tax.leaf_codes[x]]])])
               for x in (a, b)]
        assert top[0] != top[1] and tax.leaf_probs[a] >= tax.leaf_probs[b]


def test_each_case_planted_at_its_rate(data):
    cases, code = data["manifest"]["cases"], data["classes"].code
    objects = _objects(data["boxes"])
    for pair in cases["co_label"]["pairs"]:  # (a)
        a, b = code(pair["source"]["label"]), code(pair["co_label"]["label"])
        k, n = _rate(objects, {a}, frozenset({b}).issubset)
        assert n >= 100 and _within(k, n, CFG.co_label_rate), (k, n)
    for item in cases["explicit_duplicate"]["classes"]:  # (b)
        leaf, parent = code(item["leaf"]["label"]), code(item["parent"]["label"])
        k, n = _rate(objects, {leaf}, frozenset({parent}).issubset)
        assert n >= 100 and _within(k, n, CFG.explicit_duplicate_rate), (k, n)
    for item in cases["parent_label"]["classes"]:  # (c): the parent's boxes come from this leaf
        leaf, parent = code(item["leaf"]["label"]), code(item["parent"]["label"])
        k, n = _rate(objects, {leaf, parent}, frozenset({parent}).__eq__)
        assert n >= 100 and _within(k, n, CFG.parent_label_rate), (k, n)
        assert not any(s == {leaf, parent} for _, s in objects)  # never both
    for group in cases["synonym"]["groups"]:  # (d)
        members = [code(m["label"]) for m in group["classes"]]
        k, n = _rate(objects, set(members), _two_labels)
        assert n >= 100 and _within(k, n, CFG.synonym_both_rate), (k, n)
        single = [next(iter(s)) for _, s in objects if len(s) == 1 and s <= set(members)]
        for member, share in zip(members, group["shares"]):
            assert _within(single.count(member), len(single), share)
        assert group["shares"] == list(SYNONYM_SHARES[len(members)])
    for pair in cases["control"]["pairs"]:
        a, b = code(pair[0]["label"]), code(pair[1]["label"])
        k, n = _rate(objects, {a, b}, frozenset({a, b}).__eq__)
        assert _within(k, n, CFG.pair_duplicate_rate), (k, n)


def _expected_synonym_ratio(shares, both, x, y) -> float:
    """Box-pair ratio x -> y of a synonym group: P(x and y boxed) / P(x boxed) per object."""
    s = np.asarray(shares)
    pair = both * (s[x] * s[y] / (1 - s[x]) + s[y] * s[x] / (1 - s[y]))
    second_x = both * sum(s[i] * s[x] / (1 - s[i]) for i in range(len(s)) if i != x)
    return pair / (s[x] * (1 - both) + both * s[x] + second_x)


def test_analyzer_finds_planted_pairs_and_rates(data):
    classes, boxes, manifest = data["classes"], data["boxes"], data["manifest"]
    h = hmod.read_hierarchy(data["root"] / "hierarchy.json", classes)
    result = analyze_tables(boxes, classes, h)
    p = result.pairs
    listed = {(int(s), int(c)): (float(r), int(n)) for s, c, r, n in
              zip(p.source, p.confusion, p.ratio, p.source_boxes)}
    planted = {(classes.code(a), classes.code(b)) for a, b in manifest["planted_pairs"]}
    # exactly the planted pairs (>= 0.1 in both orders at these shares), nothing else
    assert {frozenset(k) for k in listed} == {frozenset(k) for k in planted}
    cases, code = manifest["cases"], classes.code

    def check(src, conf, rate):
        ratio, n = listed[(src, conf)]
        assert _within(round(ratio * n), n, rate), (ratio, n, rate)

    for pair in cases["co_label"]["pairs"]:
        check(code(pair["source"]["label"]), code(pair["co_label"]["label"]), CFG.co_label_rate)
    for item in cases["explicit_duplicate"]["classes"]:
        check(code(item["leaf"]["label"]), code(item["parent"]["label"]),
              CFG.explicit_duplicate_rate)
    for group in cases["synonym"]["groups"]:
        members = [code(m["label"]) for m in group["classes"]]
        for x in range(len(members)):
            for y in range(len(members)):
                if x != y and (members[x], members[y]) in listed:
                    check(members[x], members[y], _expected_synonym_ratio(
                        group["shares"], CFG.synonym_both_rate, x, y))
    # (c) has no duplicate box: the analyzer's box counts show it, parent / (parent + leaf)
    for item in cases["parent_label"]["classes"]:
        leaf, parent = code(item["leaf"]["label"]), code(item["parent"]["label"])
        n_parent, n_leaf = result.counts.boxes[parent], result.counts.boxes[leaf]
        assert _within(int(n_parent), int(n_parent + n_leaf), CFG.parent_label_rate)


def test_image_labels_follow_the_annotation_process(data):
    root, classes, cases = data["root"], data["classes"], data["manifest"]["cases"]
    labels = oid_csv.read_image_labels(root / "train-annotations-human-imagelabels.csv", classes)
    boxes, labels = oid_csv.align_images(data["boxes"], labels)
    verdict = {(int(i), int(c)): int(v) for i, c, v in
               zip(labels.image_codes, labels.label_codes, labels.confidence)}
    boxed = set(zip(boxes.image_codes.tolist(), boxes.label_codes.tolist()))
    assert not any(verdict.get(k) == 0 for k in boxed)  # a boxed class is never negative
    objects = _objects(boxes)
    for group in cases["synonym"]["groups"]:
        members = [classes.code(m["label"]) for m in group["classes"]]
        # images whose only object of the look is boxed with one member: the others there
        other = []
        for image, s in objects:
            if len(s) == 1 and s <= set(members):
                other += [(image, m) for m in members if m not in s and (image, m) not in boxed]
        states = [verdict.get(k) for k in other]
        assert len(states) >= 100 and states.count(0) == 0  # never verified absent
        assert states.count(None) / len(states) > 0.5        # usually unverified
        assert states.count(1) > 0                          # sometimes verified present
    for item in cases["parent_label"]["classes"]:
        leaf, parent = classes.code(item["leaf"]["label"]), classes.code(item["parent"]["label"])
        images = {i for i, s in objects if s == {parent}}
        assert images and not any(verdict.get((i, leaf)) == 0 for i in images)


def test_val_class_balance(data):
    classes = data["classes"]
    val = oid_csv.read_boxes(data["root"] / "val-annotations-bbox.csv", classes)
    per_class = np.bincount(val.label_codes, minlength=len(classes))
    train_classes = np.unique(data["boxes"].label_codes)
    assert (per_class[train_classes] >= CFG.val_class_balance).all()
    # the rare classes were not filled from crowded images (60-250 objects)
    assert np.bincount(val.image_codes).max() < 60
    assert val.num_images >= CFG.val_images == 150
    assert data["manifest"]["splits"]["val"]["images"] == val.num_images
    train_ids = set((data["root"] / "train-image-ids.txt").read_text().split())
    val_ids = (data["root"] / "val-image-ids.txt").read_text().split()
    assert len(val_ids) == len(set(val_ids)) == val.num_images and not train_ids & set(val_ids)


def test_deterministic_for_a_seed(tmp_path):
    small = SynthConfig(train_images=60, val_images=10, classes=16, seed=2, val_class_balance=2)
    write_dataset(tmp_path / "a", small, with_images=False)
    write_dataset(tmp_path / "b", small, with_images=False)
    files = ("train-annotations-bbox.csv", "val-annotations-bbox.csv",
             "train-annotations-human-imagelabels.csv", "val-annotations-human-imagelabels.csv",
             "synth.json", "class-descriptions.csv", "hierarchy.json")
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = SynthConfig(train_images=60, val_images=10, classes=16, seed=3, val_class_balance=2)
    write_dataset(tmp_path / "c", other, with_images=False)
    assert (tmp_path / "a" / files[0]).read_bytes() != (tmp_path / "c" / files[0]).read_bytes()


def test_rates_off_plant_nothing(tmp_path):
    off = SynthConfig(train_images=300, val_images=0, classes=16, seed=1, parent_label_rate=0,
                      explicit_duplicate_rate=0, co_label_rate=0, synonym_both_rate=0,
                      pair_duplicate_rate=0)
    write_dataset(tmp_path / "d", off, with_images=False)
    classes = oid_csv.read_classes(tmp_path / "d" / "class-descriptions.csv")
    h = hmod.read_hierarchy(tmp_path / "d" / "hierarchy.json", classes)
    boxes = oid_csv.read_boxes(tmp_path / "d" / "train-annotations-bbox.csv", classes)
    assert all(len(h.descendants[c]) == 0 for c in np.unique(boxes.label_codes))
    assert len(analyze_tables(boxes, classes, h).pairs) == 0


@pytest.mark.parametrize("args, message", [
    (["--parent-label-rate", "1.5"], "parent_label_rate must be in [0, 1]"),
    (["--classes", "8", "--synonym-groups", "4"], "cannot hold the planted cases"),
    (["--val-class-balance", "-1"], "val_class_balance must be >= 0"),
])
def test_bad_case_options_raise_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "x"
    result = CliRunner().invoke(app, ["synth", str(out), "--train-images", "5", "--no-images",
                                      *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError) and message in str(result.exception)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_appearance_jitter_varies_objects_of_one_class():
    from wilddet.data.records import BoxTable, ImageLabelTable
    from wilddet.data.synthetic import SplitAnnotations, render_image

    tax = build_taxonomy(SynthConfig(classes=8))
    solid = next(i for i, st in enumerate(tax.leaf_styles)
                 if st.texture == "solid" and st.shape == "square")
    boxes = BoxTable(np.zeros(2, np.int32), tax.leaf_codes[[solid, solid]].astype(np.int32),
                     np.array([[0.05, 0.05, 0.45, 0.45], [0.55, 0.55, 0.95, 0.95]], np.float32),
                     np.zeros(2, bool), np.array(["x"], dtype=object))
    empty = ImageLabelTable(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8),
                            boxes.image_ids)
    ann = SplitAnnotations(boxes, empty, np.arange(2), np.ones(2, np.int64),
                           np.array([solid, solid]))

    def centres(jitter):
        img = render_image(ann, tax, 0, np.arange(2), 64, np.random.default_rng(0), jitter)
        return img[16, 16].astype(int), img[48, 48].astype(int)

    a, b = centres(0.0)
    assert np.abs(a - b).max() <= 2  # the same colour (up to rounding)
    a, b = centres(1.0)
    assert np.abs(a - b).max() > 5
    with pytest.raises(ValueError, match="appearance_jitter"):
        SynthConfig(appearance_jitter=3.0)
