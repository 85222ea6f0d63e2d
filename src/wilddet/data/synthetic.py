"""Synthetic Open Images: a seeded generator that plants what the method is about.

Shapes: ``I`` images, ``O`` objects, ``N`` box rows (objects + duplicate boxes), ``C`` classes.

What it plants (all deterministic from ``seed``):

- **Hierarchy, 3 class levels** under the non-class root ``/m/0bl9f``: family ("Round shape",
  "Angular shape") > shape ("Circle", "Square", ...) > leaf ("red striped circle"). Boxes carry
  leaf labels only; the parents come from ``hierarchy.json`` (as in the challenge).
- **Long tail**: leaf ``k`` in a seeded random rank order gets probability ∝ (rank+1)^-alpha;
  at the defaults (30 leaves, alpha 1.6) head/tail ≈ 230.
- **Confusion pairs**: ``num_pairs`` leaves have a look-alike partner (same shape and texture,
  hue shifted by ``pair_hue_shift`` degrees). An object of either class of a pair carries, with
  probability ``pair_duplicate_rate``, a second box of the partner class jittered so that
  IoU > 0.9 (the implicit multi-labels of Table 2).
- **Group-of boxes**: with probability ``group_of_rate`` an object is a cluster of 3–6 small
  same-class shapes inside one box with IsGroupOf=1.
- **Non-exhaustive image-level labels**: each class present is verified positive with
  probability ``positive_label_rate`` (else left unverified), and ``negatives_per_image`` absent
  leaf classes are verified negative; sometimes an absent shape class is verified negative (which
  the hierarchy expands to all its leaves).
- **Learnable pixels**: each leaf has a shape, a colour and a texture (solid, striped, dotted);
  look-alike partners differ only by a small hue shift.
- **Crowded images**: a fraction ``crowded_rate`` of images hold 60–250 objects (as some Open
  Images photos hold hundreds of boxes), so pairwise per-image work is exercised.
"""

from __future__ import annotations

import colorsys
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wilddet.data.records import BoxTable, ClassList, ImageLabelTable

log = logging.getLogger(__name__)

SHAPES = ("circle", "ring", "square", "triangle", "diamond", "cross")
FAMILY_OF_SHAPE = {"circle": "Round shape", "ring": "Round shape", "square": "Angular shape",
                   "triangle": "Angular shape", "diamond": "Angular shape",
                   "cross": "Angular shape"}
TEXTURES = ("solid", "striped", "dotted")
HUE_NAMES = ("red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue",
             "violet", "magenta", "pink")
ROOT = "/m/0bl9f"


@dataclass(frozen=True)
class SynthConfig:
    train_images: int = 1000
    val_images: int = 200
    classes: int = 30            # leaf classes (look-alike partners included)
    image_size: int = 128        # px, square images
    seed: int = 0
    alpha: float = 1.6           # power-law exponent of leaf frequencies
    objects_per_image: float = 6.0   # mean objects (not boxes) per image
    num_pairs: int = 0           # 0: max(1, classes // 8)
    pair_duplicate_rate: float = 0.5
    pair_hue_shift: float = 14.0  # degrees
    group_of_rate: float = 0.06
    positive_label_rate: float = 0.85
    negatives_per_image: int = 3
    crowded_rate: float = 0.002
    min_object_size: float = 0.14   # normalized side
    max_object_size: float = 0.42

    def __post_init__(self):
        if self.classes < 4 or self.classes > 200:
            raise ValueError("classes must be in [4, 200]")
        if self.train_images < 1 or self.val_images < 0:
            raise ValueError("train_images must be >= 1 and val_images >= 0")
        if self.image_size < 32:
            raise ValueError("image_size must be >= 32 px")


@dataclass(frozen=True)
class LeafStyle:
    shape: str
    texture: str
    hue: float      # degrees
    name: str


@dataclass(frozen=True)
class Taxonomy:
    """The synthetic class list with its hierarchy and planted structure."""

    classes: ClassList
    leaf_codes: np.ndarray          # [L] class codes of the leaves
    leaf_styles: tuple[LeafStyle, ...]  # [L]
    leaf_probs: np.ndarray          # [L] sampling probability of each leaf
    partner: np.ndarray             # [L] leaf index of the look-alike partner, -1 if none
    shape_codes: dict[str, int]     # shape -> class code
    tree: dict                      # hierarchy JSON

    @property
    def planted_pairs(self) -> list[tuple[str, str]]:
        """(label, partner label) for each planted confusion pair, both orders."""
        out = []
        for leaf, other in enumerate(self.partner):
            if other >= 0:
                out.append((self.classes.labels[self.leaf_codes[leaf]],
                            self.classes.labels[self.leaf_codes[other]]))
        return out


def build_taxonomy(cfg: SynthConfig) -> Taxonomy:
    rng = np.random.default_rng([cfg.seed, 1])
    num_pairs = cfg.num_pairs or max(1, cfg.classes // 8)
    num_base = cfg.classes - num_pairs
    styles: list[LeafStyle] = []
    for i in range(num_base):
        combo = i % (len(SHAPES) * len(TEXTURES))
        shape, texture = SHAPES[combo % len(SHAPES)], TEXTURES[combo // len(SHAPES)]
        hue_index = (i // 18 + 7 * combo) % len(HUE_NAMES)
        styles.append(LeafStyle(shape, texture, 30.0 * hue_index,
                                f"{HUE_NAMES[hue_index]} {texture} {shape}"))
    partner = np.full(cfg.classes, -1, dtype=np.int64)
    sources = rng.choice(num_base, size=num_pairs, replace=False)
    for k, src in enumerate(sorted(sources)):
        base = styles[src]
        styles.append(LeafStyle(base.shape, base.texture, (base.hue + cfg.pair_hue_shift) % 360,
                                f"pale {base.name}"))
        partner[src], partner[num_base + k] = num_base + k, src
    # Class list: families, shapes, then leaves (the order of class-descriptions.csv).
    families = sorted(set(FAMILY_OF_SHAPE.values()))
    shapes_used = [s for s in SHAPES if any(st.shape == s for st in styles)]
    labels, names = [], []
    for name in families + [s.capitalize() for s in shapes_used] + [s.name for s in styles]:
        labels.append(f"/m/wd{len(labels):04d}")
        names.append(name)
    index = dict(zip(names, labels))
    shape_codes = {s: len(families) + i for i, s in enumerate(shapes_used)}
    leaf_codes = np.arange(len(families) + len(shapes_used), len(labels))
    tree = {"LabelName": ROOT, "Subcategory": []}
    for fam in families:
        fam_node = {"LabelName": index[fam], "Subcategory": []}
        for s in shapes_used:
            if FAMILY_OF_SHAPE[s] != fam:
                continue
            fam_node["Subcategory"].append({
                "LabelName": index[s.capitalize()],
                "Subcategory": [{"LabelName": index[st.name]} for st in styles if st.shape == s]})
        tree["Subcategory"].append(fam_node)
    rank = rng.permutation(cfg.classes)
    probs = (rank + 1.0) ** -cfg.alpha
    probs /= probs.sum()
    classes = ClassList(np.asarray(labels, dtype=object), np.asarray(names, dtype=object))
    return Taxonomy(classes, leaf_codes, tuple(styles), probs, partner, shape_codes, tree)


@dataclass(frozen=True)
class SplitAnnotations:
    boxes: BoxTable
    labels: ImageLabelTable
    object_of_box: np.ndarray       # [N] object index each box row belongs to
    group_members: np.ndarray       # [O] number of shapes drawn for the object (1 or 3..6)
    object_leaf: np.ndarray         # [O] leaf index drawn for the object


def _image_ids(prefix: int, count: int, seed: int) -> np.ndarray:
    """16-hex-digit ImageIDs, unique, not sorted (a bijection of the index)."""
    x = np.arange(count, dtype=np.uint64) + np.uint64(prefix << 40) + np.uint64(seed << 48)
    # splitmix64 finaliser: a bijection on 64-bit integers, so the IDs stay unique
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed = x ^ (x >> np.uint64(31))
    return np.char.mod("%016x", mixed).astype(object)


def generate_annotations(cfg: SynthConfig, tax: Taxonomy, split: str) -> SplitAnnotations:
    """All boxes and image-level labels of one split, vectorised over objects."""
    split_key = {"train": 2, "val": 3}[split]
    num_images = cfg.train_images if split == "train" else cfg.val_images
    rng = np.random.default_rng([cfg.seed, split_key])
    counts = 1 + rng.poisson(max(cfg.objects_per_image - 1.0, 0.0), size=num_images)
    crowded = rng.random(num_images) < cfg.crowded_rate
    counts[crowded] = rng.integers(60, 251, size=int(crowded.sum()))
    obj_image = np.repeat(np.arange(num_images, dtype=np.int32), counts)
    num_obj = len(obj_image)
    leaf = rng.choice(len(tax.leaf_probs), size=num_obj, p=tax.leaf_probs)
    group = rng.random(num_obj) < cfg.group_of_rate
    members = np.where(group, rng.integers(3, 7, size=num_obj), 1)
    side = rng.uniform(cfg.min_object_size, cfg.max_object_size, size=num_obj)
    side = np.where(group, np.minimum(side * 1.6, 0.9), side)
    side = np.where(np.repeat(crowded, counts), side * 0.35, side)
    aspect = np.exp(rng.uniform(-0.25, 0.25, size=num_obj))
    w = np.clip(side * aspect, 0.02, 1.0)
    h = np.clip(side / aspect, 0.02, 1.0)
    x0 = rng.uniform(0, 1, size=num_obj) * (1 - w)
    y0 = rng.uniform(0, 1, size=num_obj) * (1 - h)
    obj_boxes = np.stack([x0, y0, x0 + w, y0 + h], axis=1)
    # Confusion duplicates: a second box of the partner class, each edge moved by at most
    # 1% of the side, which keeps IoU above ~0.96 > 0.9.
    has_partner = tax.partner[leaf] >= 0
    dup = has_partner & (rng.random(num_obj) < cfg.pair_duplicate_rate)
    dup_idx = np.flatnonzero(dup)
    jitter = rng.uniform(-0.01, 0.01, size=(len(dup_idx), 4)) * np.stack(
        [w[dup_idx], h[dup_idx], w[dup_idx], h[dup_idx]], axis=1)
    dup_boxes = np.clip(obj_boxes[dup_idx] + jitter, 0.0, 1.0)
    # Rows: each object's box, followed by its duplicate if any.
    rows_obj = np.concatenate([np.arange(num_obj), dup_idx])
    rows_leaf = np.concatenate([leaf, tax.partner[leaf[dup_idx]]])
    rows_box = np.concatenate([obj_boxes, dup_boxes]).astype(np.float32)
    order = np.lexsort((np.concatenate([np.zeros(num_obj), np.ones(len(dup_idx))]), rows_obj))
    rows_obj, rows_leaf, rows_box = rows_obj[order], rows_leaf[order], rows_box[order]
    image_ids = _image_ids(split_key, num_images, cfg.seed)
    boxes = BoxTable(obj_image[rows_obj], tax.leaf_codes[rows_leaf].astype(np.int32), rows_box,
                     group[rows_obj], image_ids)
    labels = _image_labels(cfg, tax, boxes, num_images, rng)
    return SplitAnnotations(boxes, labels, rows_obj, members, leaf)


def _image_labels(cfg: SynthConfig, tax: Taxonomy, boxes: BoxTable, num_images: int,
                  rng: np.random.Generator) -> ImageLabelTable:
    num_classes = len(tax.classes)
    present = np.unique(boxes.image_codes.astype(np.int64) * num_classes + boxes.label_codes)
    keep = rng.random(len(present)) < cfg.positive_label_rate
    pos = present[keep]
    # Negatives: random leaves absent from the image, plus sometimes an absent shape class.
    neg_img = np.repeat(np.arange(num_images, dtype=np.int64), cfg.negatives_per_image)
    neg_cls = tax.leaf_codes[rng.integers(0, len(tax.leaf_codes), size=len(neg_img))]
    shape_codes = np.asarray(sorted(tax.shape_codes.values()))
    extra = rng.random(num_images) < 0.3
    neg_img = np.concatenate([neg_img, np.flatnonzero(extra)])
    neg_cls = np.concatenate([neg_cls, shape_codes[rng.integers(0, len(shape_codes),
                                                                size=int(extra.sum()))]])
    neg = np.unique(neg_img * num_classes + neg_cls)
    # A negative shape class must have none of its leaves in the image.
    leaf_to_shape = np.full(num_classes, -1, dtype=np.int64)
    for leaf_i, code in enumerate(tax.leaf_codes):
        leaf_to_shape[code] = tax.shape_codes[tax.leaf_styles[leaf_i].shape]
    present_img, present_cls = present // num_classes, present % num_classes
    present_shapes = np.unique(present_img * num_classes + leaf_to_shape[present_cls])
    neg = neg[~np.isin(neg, present) & ~np.isin(neg, present_shapes)]
    keys = np.concatenate([pos, neg])
    conf = np.concatenate([np.ones(len(pos), np.int8), np.zeros(len(neg), np.int8)])
    order = np.argsort(keys, kind="stable")
    keys, conf = keys[order], conf[order]
    return ImageLabelTable((keys // num_classes).astype(np.int32),
                           (keys % num_classes).astype(np.int32), conf, boxes.image_ids)


# ----------------------------------------------------------------------------------------------
# rendering


def _rgb(hue_deg: float, value: float = 0.9) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(hue_deg / 360.0, 0.85, value)) * 255.0


def _shape_mask(shape: str, w: int, h: int) -> np.ndarray:
    """[h, w] bool mask of ``shape`` filling a w×h px box."""
    yy, xx = np.mgrid[0:h, 0:w]
    u = (xx + 0.5) / w * 2 - 1   # [-1, 1]
    v = (yy + 0.5) / h * 2 - 1
    if shape == "circle":
        return u ** 2 + v ** 2 <= 1.0
    if shape == "ring":
        r = u ** 2 + v ** 2
        return (r <= 1.0) & (r >= 0.3)
    if shape == "square":
        return np.ones((h, w), dtype=bool)
    if shape == "triangle":
        return (v >= -1) & (np.abs(u) <= (v + 1) / 2)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        return (np.abs(u) <= 0.33) | (np.abs(v) <= 0.33)
    raise ValueError(shape)


def _texture(texture: str, w: int, h: int, phase: int) -> np.ndarray:
    """[h, w] float in [0, 1]: 1 keeps the base colour, 0 the dark variant."""
    yy, xx = np.mgrid[0:h, 0:w]
    if texture == "solid":
        return np.ones((h, w))
    if texture == "striped":
        return (((xx + yy + phase) // 3) % 2).astype(float)
    return 1.0 - ((((xx + phase) % 5) < 2) & (((yy + phase) % 5) < 2)).astype(float)


def render_image(ann: SplitAnnotations, tax: Taxonomy, image_code: int, rows: np.ndarray,
                 size: int, rng: np.random.Generator) -> np.ndarray:
    """[size, size, 3] uint8: a noisy background and every object of the image (duplicate boxes
    are labels of an object already drawn and add no pixels)."""
    base = rng.uniform(90, 160)
    gy = np.linspace(-12, 12, size)[:, None, None]
    img = base + gy + rng.normal(0, 6, size=(size, size, 3))
    drawn = set()
    for r in rows:
        obj = int(ann.object_of_box[r])
        if obj in drawn:
            continue
        drawn.add(obj)
        style = tax.leaf_styles[int(ann.object_leaf[obj])]
        x0, y0, x1, y1 = (ann.boxes.boxes_norm[r] * size).tolist()
        n_members = int(ann.group_members[obj])
        if n_members == 1:
            parts = [(x0, y0, x1, y1)]
        else:  # a cluster of small objects inside the group-of box
            cols = int(np.ceil(np.sqrt(n_members)))
            cw, ch = (x1 - x0) / cols, (y1 - y0) / int(np.ceil(n_members / cols))
            parts = []
            for m in range(n_members):
                cx, cy = x0 + (m % cols) * cw, y0 + (m // cols) * ch
                s = rng.uniform(0.6, 0.9)
                parts.append((cx + (1 - s) * cw / 2, cy + (1 - s) * ch / 2,
                              cx + (1 + s) * cw / 2, cy + (1 + s) * ch / 2))
        colour, dark = _rgb(style.hue), _rgb(style.hue, 0.35)
        for px0, py0, px1, py1 in parts:
            ix0, iy0 = int(round(px0)), int(round(py0))
            ix1, iy1 = max(int(round(px1)), ix0 + 2), max(int(round(py1)), iy0 + 2)
            ix1, iy1 = min(ix1, size), min(iy1, size)
            w, h = ix1 - ix0, iy1 - iy0
            if w < 2 or h < 2:
                continue
            mask = _shape_mask(style.shape, w, h)
            tex = _texture(style.texture, w, h, int(rng.integers(0, 6)))[..., None]
            patch = tex * colour + (1 - tex) * dark
            region = img[iy0:iy1, ix0:ix1]
            region[mask] = patch[mask]
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# writing a dataset


def write_dataset(out_dir: str | os.PathLike, cfg: SynthConfig, with_images: bool = True,
                  progress=None) -> dict:
    """Write a complete synthetic dataset into ``out_dir`` (built in a temporary folder beside
    it, then renamed, so a failure leaves nothing half-written). Returns the manifest.

    ``progress(split, done, total)`` is called while images are rendered (CLI progress bars).
    """

    from wilddet.data.oid_csv import write_boxes, write_image_labels

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty")
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tax = build_taxonomy(cfg)
        manifest = {"config": asdict(cfg), "with_images": with_images,
                    "planted_pairs": tax.planted_pairs, "splits": {}}
        with open(tmp / "class-descriptions.csv", "w", encoding="utf-8") as f:
            f.writelines(f"{label},{name}\n" for label, name in zip(tax.classes.labels, tax.classes.names))
        (tmp / "hierarchy.json").write_text(json.dumps(tax.tree, indent=1))
        for split in ("train", "val"):
            n = cfg.train_images if split == "train" else cfg.val_images
            ann = generate_annotations(cfg, tax, split)
            write_boxes(tmp / f"{split}-annotations-bbox.csv", ann.boxes, tax.classes)
            write_image_labels(tmp / f"{split}-annotations-human-imagelabels.csv", ann.labels,
                               tax.classes)
            (tmp / f"{split}-image-ids.txt").write_text("\n".join(ann.boxes.image_ids) + "\n")
            manifest["splits"][split] = {"images": n, "boxes": len(ann.boxes),
                                         "image_labels": len(ann.labels)}
            if with_images:
                _render_split(tmp / split, ann, tax, cfg, split, progress)
        (tmp / "synth.json").write_text(json.dumps(manifest, indent=1))
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _render_split(folder: Path, ann: SplitAnnotations, tax: Taxonomy, cfg: SynthConfig,
                  split: str, progress) -> None:
    from PIL import Image

    from wilddet.data.records import rows_by_image

    folder.mkdir()
    order, offsets = rows_by_image(ann.boxes.image_codes, ann.boxes.num_images)
    total = ann.boxes.num_images
    for code in range(total):
        rng = np.random.default_rng([cfg.seed, 7, 0 if split == "train" else 1, code])
        rows = order[offsets[code]:offsets[code + 1]]
        pixels = render_image(ann, tax, code, rows, cfg.image_size, rng)
        Image.fromarray(pixels).save(folder / f"{ann.boxes.image_ids[code]}.jpg", quality=92)
        if progress is not None:
            progress(split, code + 1, total)
