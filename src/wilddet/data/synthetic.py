"""Synthetic Open Images: a seeded generator that plants what the method is about.

Shapes: ``I`` images, ``O`` objects, ``N`` box rows (objects + duplicate boxes), ``C`` classes,
``L`` leaf classes.

What it plants (all deterministic from ``seed``):

- **Hierarchy, 3 class levels** under the non-class root ``/m/0bl9f``: family ("Round shape",
  "Angular shape") > shape ("Circle", "Square", ...) > leaf ("red striped circle"). Boxes carry
  leaf labels, except where case (b) or (c) below puts a shape (parent) label on a box.
- **Long tail**: each object's *look* (a leaf's pixels) is drawn with probability
  ∝ (rank+1)^-alpha, ranks a seeded permutation; at the defaults (30 leaves, alpha 1.6)
  head/tail ≈ 230.
- **The paper's four label cases** (Figure 1 of the main paper; every class involved is listed in
  ``synth.json["cases"]``), on disjoint sets of leaves:

  (a) *co-label*: pairs (A, B) of leaves of different families; an object that looks like A
      carries, with probability ``co_label_rate``, a second box of B (IoU > 0.9), as a toy car
      is boxed as "car" and "toy". A is the more frequent look of the two.
  (b) *explicit duplicate*: an object of one of these leaves carries, with probability
      ``explicit_duplicate_rate``, a second box of its shape (parent) class ("apple" + "fruit").
  (c) *parent label*: an object of one of these leaves is boxed, with probability
      ``parent_label_rate``, only with its shape class ("apples" boxed as "fruit").
  (d) *synonyms*: groups of 2-3 leaves rendered identically; each object of the group's look is
      labelled with one member drawn by fixed shares (``SYNONYM_SHARES``) and, with probability
      ``synonym_both_rate``, also with a second member drawn from the others by their shares
      (its own box, IoU > 0.9), as a flashlight is boxed "flashlight" or "torch".
  Leaves of (b) and (c) sit under different shapes where the shapes allow it, so a parent box
  comes from one case only. Case leaves are taken from the most frequent two thirds of the
  looks first (each case has boxes to measure; the rarest third stays plain).
- **Control pairs**: ``num_pairs`` leaves have a look-alike partner (same shape and texture, hue
  shifted by ``pair_hue_shift`` degrees: distinct pixels). An object of either class of a pair
  carries, with probability ``pair_duplicate_rate``, a second box of the partner class
  (IoU > 0.9).
- **Group-of boxes**: with probability ``group_of_rate`` an object is a cluster of 3-6 small
  same-class shapes inside one box with IsGroupOf=1.
- **Non-exhaustive image-level labels, from the same annotation process**: a second, independent
  labelling by the rules above of a share ``second_annotation_rate`` of the objects (so a
  synonym's other member, a (c) object's leaf or a co-label sometimes appears there, and the
  label the box annotator did not choose is usually unverified) is joined with the box labels;
  each such class is verified positive with probability ``positive_label_rate`` (else left
  unverified).
  ``negatives_per_image`` random leaves are verified negative, and sometimes a shape class (which
  the hierarchy expands to its leaves), never a class whose object is in the image (its look,
  the look's synonyms, its co-label, their shapes).
- **Balanced val** (``val_class_balance`` = n > 0): val images are chosen from a larger seeded
  pool so that every class that carries boxes has at least n boxes (every class then has at
  least n after hierarchy expansion); the split may then hold more than ``val_images`` images.
- **Learnable pixels**: each leaf has a shape, a colour and a texture (solid, striped, dotted);
  ``appearance_jitter`` > 0 varies hue and brightness from object to object (classes with real
  variation, so a few tail images can be memorised without the class being learnt).
- **Crowded images**: a fraction ``crowded_rate`` of images hold 60-250 objects (as some Open
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
# Other names for a hue: the display names of the 2nd and 3rd member of a synonym group.
HUE_SYNONYMS = {"red": ("scarlet", "crimson"), "orange": ("amber", "tangerine"),
                "yellow": ("gold", "lemon"), "lime": ("chartreuse", "apple"),
                "green": ("emerald", "jade"), "teal": ("turquoise", "petrol"),
                "cyan": ("aqua", "ice"), "azure": ("sky", "cerulean"),
                "blue": ("cobalt", "navy"), "violet": ("purple", "lilac"),
                "magenta": ("fuchsia", "cerise"), "pink": ("rose", "salmon")}
SYNONYM_SHARES = {2: (0.6, 0.4), 3: (0.45, 0.35, 0.2)}  # label shares by group size
ROOT = "/m/0bl9f"
AUTO = -1  # a planted-case count chosen from the number of classes


@dataclass(frozen=True)
class SynthConfig:
    train_images: int = 1000
    val_images: int = 200
    classes: int = 30            # leaf classes (look-alike partners and synonyms included)
    image_size: int = 128        # px, square images
    seed: int = 0
    alpha: float = 1.6           # power-law exponent of look frequencies
    objects_per_image: float = 6.0   # mean objects (not boxes) per image
    num_pairs: int = 0           # control look-alike pairs; 0: max(1, classes // 8)
    pair_duplicate_rate: float = 0.5
    pair_hue_shift: float = 14.0  # degrees
    group_of_rate: float = 0.06
    positive_label_rate: float = 0.85
    negatives_per_image: int = 3
    crowded_rate: float = 0.002
    min_object_size: float = 0.14   # normalized side
    max_object_size: float = 0.42
    # the paper's four cases; counts: AUTO (-1) = from ``classes`` (see ``case_counts``), 0 = off
    parent_label_rate: float = 0.3        # (c)
    parent_label_classes: int = AUTO
    explicit_duplicate_rate: float = 0.4  # (b)
    explicit_duplicate_classes: int = AUTO
    co_label_groups: int = AUTO           # (a) pairs
    co_label_rate: float = 0.3
    synonym_groups: int = AUTO            # (d) groups of 2, 3, 2, 3, ... leaves
    synonym_both_rate: float = 0.2
    second_annotation_rate: float = 0.3   # objects labelled again for the image-level labels
    appearance_jitter: float = 0.0        # per-object hue / brightness variation (render_image)
    val_class_balance: int = 0            # min boxes per class in val; 0 = plain draw

    def __post_init__(self):
        if self.classes < 4 or self.classes > 200:
            raise ValueError("classes must be in [4, 200]")
        if self.train_images < 1 or self.val_images < 0:
            raise ValueError("train_images must be >= 1 and val_images >= 0")
        if self.image_size < 32:
            raise ValueError("image_size must be >= 32 px")
        for name in ("pair_duplicate_rate", "group_of_rate", "positive_label_rate",
                     "crowded_rate", "parent_label_rate", "explicit_duplicate_rate",
                     "co_label_rate", "synonym_both_rate", "second_annotation_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        for name in ("parent_label_classes", "explicit_duplicate_classes", "co_label_groups",
                     "synonym_groups"):
            if getattr(self, name) < AUTO:
                raise ValueError(f"{name} must be >= 0 (or -1 for automatic)")
        if self.num_pairs < 0 or self.val_class_balance < 0:
            raise ValueError("num_pairs and val_class_balance must be >= 0")
        if not 0.0 <= self.appearance_jitter <= 2.0:
            raise ValueError("appearance_jitter must be in [0, 2]")
        case_counts(self)  # raises when the requested cases do not fit the leaves


@dataclass(frozen=True)
class CaseCounts:
    """How many leaves each planted structure uses (resolved from a ``SynthConfig``)."""

    control_pairs: int
    synonym_groups: int
    co_label_groups: int
    explicit_duplicate_classes: int
    parent_label_classes: int

    @property
    def synonym_sizes(self) -> list[int]:
        return [2 + k % 2 for k in range(self.synonym_groups)]

    def needed_base_leaves(self) -> int:
        return (self.control_pairs + self.synonym_groups + 2 * self.co_label_groups
                + self.explicit_duplicate_classes + self.parent_label_classes)


def _base_leaves(classes: int, counts: CaseCounts) -> int:
    """Leaves with a style of their own (not a look-alike partner or a 2nd/3rd synonym)."""
    return classes - counts.control_pairs - sum(s - 1 for s in counts.synonym_sizes)


def case_counts(cfg: SynthConfig) -> CaseCounts:
    """Resolve the planted-case counts. AUTO: synonym and co-label groups max(1, L // 16),
    (b) and (c) leaves max(1, L // 10) each, then lowered in the order (c), (b), (a), (d) until
    they fit the L leaves; an explicit count that does not fit raises ValueError."""
    leaves = cfg.classes
    requested = {"parent_label_classes": cfg.parent_label_classes,
                 "explicit_duplicate_classes": cfg.explicit_duplicate_classes,
                 "co_label_groups": cfg.co_label_groups, "synonym_groups": cfg.synonym_groups}
    auto_value = {"parent_label_classes": max(1, leaves // 10),
                  "explicit_duplicate_classes": max(1, leaves // 10),
                  "co_label_groups": max(1, leaves // 16), "synonym_groups": max(1, leaves // 16)}
    values = {k: auto_value[k] if v == AUTO else v for k, v in requested.items()}
    automatic = [k for k, v in requested.items() if v == AUTO]

    def build() -> CaseCounts:
        return CaseCounts(cfg.num_pairs or max(1, leaves // 8), values["synonym_groups"],
                          values["co_label_groups"], values["explicit_duplicate_classes"],
                          values["parent_label_classes"])

    counts, turn = build(), 0
    while counts.needed_base_leaves() > _base_leaves(leaves, counts):
        if not any(values[k] > 0 for k in automatic):
            raise ValueError(
                f"{leaves} leaf classes cannot hold the planted cases ({counts}); raise classes "
                "or lower --synonym-groups/--co-label-groups/--explicit-duplicate-classes/"
                "--parent-label-classes")
        key = automatic[turn % len(automatic)]  # lower round-robin
        turn += 1
        if values[key] > 0:
            values[key] -= 1
            counts = build()
    return counts


@dataclass(frozen=True)
class LeafStyle:
    shape: str
    texture: str
    hue: float      # degrees
    name: str


@dataclass(frozen=True)
class Taxonomy:
    """The synthetic class list with its hierarchy and planted structure (leaf indices 0..L-1
    index ``leaf_codes``/``leaf_styles``)."""

    classes: ClassList
    leaf_codes: np.ndarray          # [L] class codes of the leaves
    leaf_styles: tuple[LeafStyle, ...]  # [L]
    leaf_probs: np.ndarray          # [L] probability that an object looks like leaf l (0 for
    #                                 the 2nd/3rd member of a synonym group: the 1st holds it)
    partner: np.ndarray             # [L] leaf index of the control look-alike partner, -1 if none
    shape_codes: dict[str, int]     # shape -> class code
    tree: dict                      # hierarchy JSON
    parent_code: np.ndarray         # [L] class code of each leaf's shape
    synonym_groups: tuple[tuple[int, ...], ...] = ()   # leaf indices, the look's leaf first
    co_label_pairs: tuple[tuple[int, int], ...] = ()   # (A, B): A-looking objects also B
    explicit_duplicate_leaves: tuple[int, ...] = ()    # (b)
    parent_label_leaves: tuple[int, ...] = ()          # (c)

    def _label(self, leaf: int) -> str:
        return str(self.classes.labels[self.leaf_codes[leaf]])

    @property
    def planted_pairs(self) -> list[tuple[str, str]]:
        """(label, label) of every ordered class pair whose objects carry two boxes with
        IoU > 0.9 (control pairs, (a), (b), (d)), both orders."""
        out: set[tuple[str, str]] = set()
        for leaf, other in enumerate(self.partner):
            if other >= 0:
                out.add((self._label(leaf), self._label(int(other))))
        pairs = list(self.co_label_pairs)
        pairs += [(g[i], g[j]) for g in self.synonym_groups for i in range(len(g))
                  for j in range(len(g)) if i != j]
        for a, b in pairs:
            out |= {(self._label(a), self._label(b)), (self._label(b), self._label(a))}
        for leaf in self.explicit_duplicate_leaves:
            parent = str(self.classes.labels[self.parent_code[leaf]])
            out |= {(self._label(leaf), parent), (parent, self._label(leaf))}
        return sorted(out)

    def cases(self, cfg: SynthConfig) -> dict:
        """The planted cases with their rates and classes (``synth.json["cases"]``)."""
        labels, names = self.classes.labels, self.classes.names

        def leaf(i: int) -> dict:
            return {"label": self._label(i), "name": str(names[self.leaf_codes[i]])}

        def with_parent(i: int) -> dict:
            code = self.parent_code[i]
            return {"leaf": leaf(i), "parent": {"label": str(labels[code]),
                                                "name": str(names[code])}}

        control = sorted({tuple(sorted((a, int(b)))) for a, b in enumerate(self.partner) if b >= 0})
        return {
            "co_label": {"case": "a", "rate": cfg.co_label_rate, "pairs": [
                {"source": leaf(a), "co_label": leaf(b)} for a, b in self.co_label_pairs]},
            "explicit_duplicate": {"case": "b", "rate": cfg.explicit_duplicate_rate,
                                   "classes": [with_parent(i)
                                               for i in self.explicit_duplicate_leaves]},
            "parent_label": {"case": "c", "rate": cfg.parent_label_rate,
                             "classes": [with_parent(i) for i in self.parent_label_leaves]},
            "synonym": {"case": "d", "both_rate": cfg.synonym_both_rate, "groups": [
                {"classes": [leaf(i) for i in g], "shares": list(SYNONYM_SHARES[len(g)])}
                for g in self.synonym_groups]},
            "control": {"rate": cfg.pair_duplicate_rate, "hue_shift_deg": cfg.pair_hue_shift,
                        "pairs": [[leaf(a), leaf(b)] for a, b in control]},
        }


def planted_case_classes(manifest: dict) -> dict[str, list[str]]:
    """Class labels of each planted group, from ``synth.json`` (what studies report apart):
    ``a_co_label``, ``b_explicit_duplicate`` (leaves), ``b_parents``, ``c_parent_label``
    (leaves), ``c_parents``, ``d_synonym``, ``control``. A manifest written before the cases
    existed gives its look-alike pairs as ``control`` and empty lists otherwise."""
    cases = manifest.get("cases")
    if cases is None:
        return {"a_co_label": [], "b_explicit_duplicate": [], "b_parents": [],
                "c_parent_label": [], "c_parents": [], "d_synonym": [],
                "control": sorted({a for pair in manifest.get("planted_pairs", ()) for a in pair})}

    def unique(items) -> list[str]:
        return sorted(set(items))

    b, c = cases["explicit_duplicate"]["classes"], cases["parent_label"]["classes"]
    return {
        "a_co_label": unique(p[k]["label"] for p in cases["co_label"]["pairs"]
                             for k in ("source", "co_label")),
        "b_explicit_duplicate": unique(x["leaf"]["label"] for x in b),
        "b_parents": unique(x["parent"]["label"] for x in b),
        "c_parent_label": unique(x["leaf"]["label"] for x in c),
        "c_parents": unique(x["parent"]["label"] for x in c),
        "d_synonym": unique(m["label"] for g in cases["synonym"]["groups"] for m in g["classes"]),
        "control": unique(m["label"] for p in cases["control"]["pairs"] for m in p),
    }


def read_planted_cases(synth_json: str | os.PathLike) -> dict[str, list[str]]:
    """``planted_case_classes`` of a ``synth.json`` file."""
    return planted_case_classes(json.loads(Path(synth_json).read_text(encoding="utf-8")))


def _base_styles(num_base: int) -> list[LeafStyle]:
    styles = []
    for i in range(num_base):
        combo = i % (len(SHAPES) * len(TEXTURES))
        shape, texture = SHAPES[combo % len(SHAPES)], TEXTURES[combo // len(SHAPES)]
        hue_index = (i // 18 + 7 * combo) % len(HUE_NAMES)
        styles.append(LeafStyle(shape, texture, 30.0 * hue_index,
                                f"{HUE_NAMES[hue_index]} {texture} {shape}"))
    return styles


def _synonym_style(base: LeafStyle, k: int) -> LeafStyle:
    """The k-th (1 or 2) other name of ``base``: the same pixels under another hue word."""
    hue_word, rest = base.name.split(" ", 1)
    return LeafStyle(base.shape, base.texture, base.hue, f"{HUE_SYNONYMS[hue_word][k - 1]} {rest}")


def _pick_distinct_shapes(candidates: list[int], count: int, styles, taken_shapes: set[str]):
    """``count`` leaves from ``candidates`` (in order), new shapes first; removes them."""
    chosen = []
    for prefer_new in (True, False):
        for i in list(candidates):
            if len(chosen) == count:
                break
            if prefer_new and styles[i].shape in taken_shapes:
                continue
            chosen.append(i)
            candidates.remove(i)
            taken_shapes.add(styles[i].shape)
    return chosen


def _class_list_and_tree(styles: list[LeafStyle]):
    """Class list (families, shapes, then leaves: the order of class-descriptions.csv), the
    hierarchy JSON, shape -> code and the leaf codes."""
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
    classes = ClassList(np.asarray(labels, dtype=object), np.asarray(names, dtype=object))
    return classes, tree, shape_codes, leaf_codes


def build_taxonomy(cfg: SynthConfig) -> Taxonomy:
    rng = np.random.default_rng([cfg.seed, 1])
    counts = case_counts(cfg)
    num_base = _base_leaves(cfg.classes, counts)
    styles = _base_styles(num_base)
    partner = np.full(cfg.classes, -1, dtype=np.int64)
    sources = sorted(rng.choice(num_base, size=counts.control_pairs, replace=False))
    for src in sources:
        base = styles[src]
        partner[src], partner[len(styles)] = len(styles), src
        styles.append(LeafStyle(base.shape, base.texture, (base.hue + cfg.pair_hue_shift) % 360,
                                f"pale {base.name}"))
    rank = rng.permutation(cfg.classes)  # frequency rank of each leaf's look (0 = head)
    # case leaves come from the most frequent two thirds of the looks first, so each case has
    # boxes to measure; the rarest third stays plain (the tail of the sampler studies)
    free = [int(i) for i in rng.permutation(num_base) if i not in set(sources)]
    free.sort(key=lambda i: bool(rank[i] >= 2 * cfg.classes / 3))  # stable: order kept within
    groups = []
    for size in counts.synonym_sizes:
        look = free.pop(0)
        groups.append((look, *range(len(styles), len(styles) + size - 1)))
        styles += [_synonym_style(styles[look], k) for k in range(1, size)]
    probs = (rank + 1.0) ** -cfg.alpha
    for g in groups:
        probs[list(g[1:])] = 0.0  # one look per group, labelled by shares
    probs /= probs.sum()
    co_label = []
    for _ in range(counts.co_label_groups):
        a = free.pop(0)
        family = FAMILY_OF_SHAPE[styles[a].shape]
        b = next((i for i in free if FAMILY_OF_SHAPE[styles[i].shape] != family), free[0])
        free.remove(b)
        co_label.append((a, b) if probs[a] >= probs[b] else (b, a))
    taken: set[str] = set()
    explicit = _pick_distinct_shapes(free, counts.explicit_duplicate_classes, styles, taken)
    parent_only = _pick_distinct_shapes(free, counts.parent_label_classes, styles, taken)
    classes, tree, shape_codes, leaf_codes = _class_list_and_tree(styles)
    parent_code = np.asarray([shape_codes[st.shape] for st in styles], dtype=np.int64)
    return Taxonomy(classes, leaf_codes, tuple(styles), probs, partner, shape_codes, tree,
                    parent_code, tuple(groups), tuple(co_label), tuple(explicit),
                    tuple(parent_only))


@dataclass(frozen=True)
class SplitAnnotations:
    boxes: BoxTable
    labels: ImageLabelTable
    object_of_box: np.ndarray       # [N] object index each box row belongs to
    group_members: np.ndarray       # [O] number of shapes drawn for the object (1 or 3..6)
    object_leaf: np.ndarray         # [O] leaf index of the object's look (what is drawn)


@dataclass(frozen=True)
class _Objects:
    """O objects of I images: image [O] int32, look [O] leaf index, group [O] bool, members [O],
    boxes [O, 4] normalized (xmin, ymin, xmax, ymax)."""

    num_images: int
    image: np.ndarray
    look: np.ndarray
    group: np.ndarray
    members: np.ndarray
    boxes: np.ndarray

    def take_images(self, images: np.ndarray) -> tuple[_Objects, np.ndarray]:
        """The objects of ``images`` (sorted codes), re-coded 0..len-1; and the kept objects."""
        recode = np.full(self.num_images, -1, dtype=np.int64)
        recode[images] = np.arange(len(images))
        keep = np.flatnonzero(recode[self.image] >= 0)
        return _Objects(len(images), recode[self.image[keep]].astype(np.int32), self.look[keep],
                        self.group[keep], self.members[keep], self.boxes[keep]), keep


@dataclass(frozen=True)
class _Labels:
    """N labels of O objects, grouped by object (each object's first label first):
    obj [N] object index, code [N] class code, duplicate [N] bool (a second label of the object,
    drawn as its own box with IoU > 0.9)."""

    obj: np.ndarray
    code: np.ndarray
    duplicate: np.ndarray

    def take_objects(self, objects: np.ndarray, num_objects: int) -> _Labels:
        recode = np.full(num_objects, -1, dtype=np.int64)
        recode[objects] = np.arange(len(objects))
        keep = recode[self.obj] >= 0
        return _Labels(recode[self.obj[keep]], self.code[keep], self.duplicate[keep])


def _image_ids(prefix: int, count: int, seed: int) -> np.ndarray:
    """16-hex-digit ImageIDs, unique, not sorted (a bijection of the index)."""
    x = np.arange(count, dtype=np.uint64) + np.uint64(prefix << 40) + np.uint64(seed << 48)
    # splitmix64 finaliser: a bijection on 64-bit integers, so the IDs stay unique
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed = x ^ (x >> np.uint64(31))
    return np.char.mod("%016x", mixed).astype(object)


def _draw_objects(cfg: SynthConfig, tax: Taxonomy, num_images: int,
                  rng: np.random.Generator) -> _Objects:
    """Objects per image (1 + Poisson, some crowded images), looks, group-of flags and boxes."""
    counts = 1 + rng.poisson(max(cfg.objects_per_image - 1.0, 0.0), size=num_images)
    crowded = rng.random(num_images) < cfg.crowded_rate
    counts[crowded] = rng.integers(60, 251, size=int(crowded.sum()))
    obj_image = np.repeat(np.arange(num_images, dtype=np.int32), counts)
    num_obj = len(obj_image)
    look = rng.choice(len(tax.leaf_probs), size=num_obj, p=tax.leaf_probs)
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
    boxes = np.stack([x0, y0, x0 + w, y0 + h], axis=1)
    return _Objects(num_images, obj_image, look, group, members, boxes)


def _pick_by_shares(shares: np.ndarray, u: np.ndarray, exclude: np.ndarray | None = None):
    """[n] member index drawn by ``shares`` [m] with uniforms u [n]; ``exclude`` [n] member
    index given probability 0 (then the others are renormalised)."""
    w = np.broadcast_to(np.asarray(shares, dtype=np.float64), (len(u), len(shares))).copy()
    if exclude is not None:
        w[np.arange(len(u)), exclude] = 0.0
    cdf = np.cumsum(w, axis=1)  # [n, m]
    pick = (cdf < (u * cdf[:, -1])[:, None]).sum(axis=1)
    return np.minimum(pick, len(shares) - 1)


def annotate_objects(cfg: SynthConfig, tax: Taxonomy, look: np.ndarray,
                     rng: np.random.Generator) -> _Labels:
    """One annotator's labels of objects with looks ``look`` [O] (the rules of the module
    docstring). The planted sets are disjoint, so an object gets at most one second label."""
    num_obj = len(look)
    u = rng.random((num_obj, 3))  # [O, 3]: which label, whether a second one, which second one
    first = tax.leaf_codes[look].astype(np.int64)
    second = np.full(num_obj, -1, dtype=np.int64)
    for group in tax.synonym_groups:  # (d)
        sel = np.flatnonzero(look == group[0])
        shares, codes = SYNONYM_SHARES[len(group)], tax.leaf_codes[list(group)]
        chosen = _pick_by_shares(shares, u[sel, 0])
        first[sel] = codes[chosen]
        both = u[sel, 1] < cfg.synonym_both_rate
        second[sel[both]] = codes[_pick_by_shares(shares, u[sel[both], 2], exclude=chosen[both])]
    parent_only = np.isin(look, tax.parent_label_leaves) & (u[:, 0] < cfg.parent_label_rate)
    first[parent_only] = tax.parent_code[look[parent_only]]  # (c)
    explicit = (np.isin(look, tax.explicit_duplicate_leaves)
                & (u[:, 1] < cfg.explicit_duplicate_rate))
    second[explicit] = tax.parent_code[look[explicit]]  # (b)
    for a, b in tax.co_label_pairs:  # (a)
        second[(look == a) & (u[:, 1] < cfg.co_label_rate)] = tax.leaf_codes[b]
    control = (tax.partner[look] >= 0) & (u[:, 1] < cfg.pair_duplicate_rate)
    second[control] = tax.leaf_codes[tax.partner[look[control]]]
    extra = np.flatnonzero(second >= 0)
    obj = np.concatenate([np.arange(num_obj), extra])
    code = np.concatenate([first, second[extra]])
    duplicate = np.concatenate([np.zeros(num_obj, bool), np.ones(len(extra), bool)])
    order = np.lexsort((duplicate, obj))
    return _Labels(obj[order], code[order].astype(np.int32), duplicate[order])


def _label_boxes(objects: _Objects, labels: _Labels, rng: np.random.Generator) -> np.ndarray:
    """[N, 4] float32: the object's box for its first label; for a second label the box with
    each edge moved by at most 1% of the side, which keeps IoU above ~0.96 > 0.9."""
    boxes = objects.boxes[labels.obj].copy()
    dup = np.flatnonzero(labels.duplicate)
    size = boxes[dup, 2:] - boxes[dup, :2]  # [n, 2] (w, h)
    jitter = rng.uniform(-0.01, 0.01, size=(len(dup), 4)) * np.concatenate([size, size], axis=1)
    boxes[dup] = np.clip(boxes[dup] + jitter, 0.0, 1.0)
    return boxes.astype(np.float32)


def _split_objects(cfg: SynthConfig, tax: Taxonomy, split: str):
    """(objects, box labels, image IDs) of a split; val is class-balanced when asked."""
    split_key = {"train": 2, "val": 3}[split]
    num_images = cfg.train_images if split == "train" else cfg.val_images
    if split == "train" or cfg.val_class_balance == 0:
        rng = np.random.default_rng([cfg.seed, split_key])
        objects = _draw_objects(cfg, tax, num_images, rng)
        return objects, annotate_objects(cfg, tax, objects.look, rng), \
            _image_ids(split_key, num_images, cfg.seed)
    pool, attempt = max(4 * num_images, 64), 0
    while True:
        rng = np.random.default_rng([cfg.seed, split_key, 100 + attempt])
        objects = _draw_objects(cfg, tax, pool, rng)
        labels = annotate_objects(cfg, tax, objects.look, rng)
        chosen = _balanced_images(objects.image[labels.obj], labels.code, pool,
                                  len(tax.classes), cfg.val_class_balance, num_images)
        if chosen is not None:
            break
        if pool >= 1 << 22:
            raise ValueError(f"val_class_balance={cfg.val_class_balance}: a pool of {pool} "
                             "images does not hold that many boxes of every class")
        pool, attempt = pool * 2, attempt + 1
    if len(chosen) > num_images:
        log.info("class-balanced val: %d images (asked %d) for >= %d boxes per class",
                 len(chosen), num_images, cfg.val_class_balance)
    subset, kept = objects.take_images(chosen)
    return subset, labels.take_objects(kept, len(objects.look)), \
        _image_ids(split_key, pool, cfg.seed)[chosen]


def _balanced_images(label_image: np.ndarray, label_code: np.ndarray, num_images: int,
                     num_classes: int, at_least: int, fill_to: int) -> np.ndarray | None:
    """Sorted image codes such that every class with a label in the pool has >= ``at_least``
    labels in the chosen images, then filled to ``fill_to`` images in pool order; None when the
    pool is too small. Greedy, rarest class first; each class takes the images that hold it in
    pool order (random), the crowded ones (more labels than 99 % of the pool's images) last, so
    they are not drafted for the classes they happen to contain."""
    per_class = np.bincount(label_code, minlength=num_classes)
    present = np.flatnonzero(per_class > 0)
    if (per_class[present] < at_least).any():
        return None
    keys = label_image.astype(np.int64) * num_classes + label_code
    cells, cell_count = np.unique(keys, return_counts=True)
    cell_image, cell_class = cells // num_classes, cells % num_classes
    labels_per_image = np.bincount(label_image, minlength=num_images)
    crowded = labels_per_image > np.percentile(labels_per_image, 99)
    chosen = np.zeros(num_images, dtype=bool)
    have = np.zeros(num_classes, dtype=np.int64)
    for c in present[np.lexsort((present, per_class[present]))]:
        if have[c] >= at_least:
            continue
        mine = np.flatnonzero((cell_class == c) & ~chosen[cell_image])
        mine = mine[np.argsort(crowded[cell_image[mine]], kind="stable")]
        images, n = cell_image[mine], cell_count[mine]
        take = images[:int(np.searchsorted(np.cumsum(n), at_least - have[c])) + 1]
        chosen[take] = True
        have = np.bincount(cell_class[chosen[cell_image]], weights=cell_count[chosen[cell_image]],
                           minlength=num_classes).astype(np.int64)
    missing = fill_to - int(chosen.sum())
    if missing > 0:
        chosen[np.flatnonzero(~chosen)[:missing]] = True
    return np.flatnonzero(chosen)


def generate_annotations(cfg: SynthConfig, tax: Taxonomy, split: str) -> SplitAnnotations:
    """All boxes and image-level labels of one split, vectorised over objects."""
    objects, labels, image_ids = _split_objects(cfg, tax, split)
    rng = np.random.default_rng([cfg.seed, {"train": 2, "val": 3}[split], 1])
    boxes = BoxTable(objects.image[labels.obj], labels.code, _label_boxes(objects, labels, rng),
                     objects.group[labels.obj], image_ids)
    image_labels = _image_labels(cfg, tax, objects, boxes, rng)
    return SplitAnnotations(boxes, image_labels, labels.obj, objects.members, objects.look)


def _true_classes(tax: Taxonomy) -> list[np.ndarray]:
    """Per leaf l [L]: the class codes an object that looks like l truly is (never verified
    negative): l, the other members of its synonym group, its co-label, their shapes."""
    out = [{int(tax.leaf_codes[leaf]), int(tax.parent_code[leaf])}
           for leaf in range(len(tax.leaf_codes))]
    for group in tax.synonym_groups:
        codes = {int(tax.leaf_codes[m]) for m in group} | {int(tax.parent_code[m]) for m in group}
        for member in group:
            out[member] |= codes
    for a, b in tax.co_label_pairs:
        out[a] |= {int(tax.leaf_codes[b]), int(tax.parent_code[b])}
    return [np.asarray(sorted(s), dtype=np.int64) for s in out]


def _image_labels(cfg: SynthConfig, tax: Taxonomy, objects: _Objects, boxes: BoxTable,
                  rng: np.random.Generator) -> ImageLabelTable:
    num_classes, num_images = len(tax.classes), objects.num_images
    # Positives: the box labels joined with a second, independent annotation of a share of the
    # objects (so the label a box annotator did not choose is usually unverified).
    relabelled = np.flatnonzero(rng.random(len(objects.look)) < cfg.second_annotation_rate)
    second = annotate_objects(cfg, tax, objects.look[relabelled], rng)
    present = np.unique(np.concatenate([
        boxes.image_codes.astype(np.int64) * num_classes + boxes.label_codes,
        objects.image[relabelled[second.obj]].astype(np.int64) * num_classes + second.code]))
    pos = present[rng.random(len(present)) < cfg.positive_label_rate]
    # Negatives: random leaves, plus sometimes a shape class, not truly in the image.
    neg_img = np.repeat(np.arange(num_images, dtype=np.int64), cfg.negatives_per_image)
    neg_cls = tax.leaf_codes[rng.integers(0, len(tax.leaf_codes), size=len(neg_img))]
    shape_codes = np.asarray(sorted(tax.shape_codes.values()))
    extra = rng.random(num_images) < 0.3
    neg_img = np.concatenate([neg_img, np.flatnonzero(extra)])
    neg_cls = np.concatenate([neg_cls, shape_codes[rng.integers(0, len(shape_codes),
                                                                size=int(extra.sum()))]])
    neg = np.unique(neg_img * num_classes + neg_cls)
    true_keys = [present]
    for leaf, codes in enumerate(_true_classes(tax)):
        images = np.unique(objects.image[objects.look == leaf]).astype(np.int64)
        true_keys.append((images[:, None] * num_classes + codes[None, :]).ravel())
    true_keys = np.unique(np.concatenate(true_keys))
    # a verified-negative shape expands to all its leaves: none of them may be in the image
    shape_of = np.arange(num_classes, dtype=np.int64)
    shape_of[tax.leaf_codes] = tax.parent_code
    true_shapes = (true_keys // num_classes) * num_classes + shape_of[true_keys % num_classes]
    neg = neg[~np.isin(neg, true_keys) & ~np.isin(neg, true_shapes)]
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
                 size: int, rng: np.random.Generator, jitter: float = 0.0) -> np.ndarray:
    """[size, size, 3] uint8: a noisy background and every object of the image (duplicate boxes
    are labels of an object already drawn and add no pixels). ``jitter`` j > 0 varies each
    object's look: hue + N(0, (8 j)²) degrees, brightness × U(1 - 0.35 j, 1)."""
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
        hue, value = style.hue, 1.0
        if jitter > 0:
            hue, value = hue + rng.normal(0.0, 8.0 * jitter), rng.uniform(1 - 0.35 * jitter, 1)
        colour, dark = _rgb(hue % 360) * value, _rgb(hue % 360, 0.35) * value
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
                    "planted_pairs": tax.planted_pairs, "cases": tax.cases(cfg),
                    "splits": {}}
        with open(tmp / "class-descriptions.csv", "w", encoding="utf-8") as f:
            f.writelines(f"{label},{name}\n"
                         for label, name in zip(tax.classes.labels, tax.classes.names))
        (tmp / "hierarchy.json").write_text(json.dumps(tax.tree, indent=1))
        for split in ("train", "val"):
            ann = generate_annotations(cfg, tax, split)
            n = ann.boxes.num_images
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
        pixels = render_image(ann, tax, code, rows, cfg.image_size, rng, cfg.appearance_jitter)
        Image.fromarray(pixels).save(folder / f"{ann.boxes.image_ids[code]}.jpg", quality=92)
        if progress is not None:
            progress(split, code + 1, total)
