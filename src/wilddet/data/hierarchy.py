"""The Open Images class hierarchy: ancestors / descendants and the expansion of ground truth.

This module is the single owner of hierarchy semantics (metric spec §6); the analyzer, the training
targets and the evaluator all call it.

- The JSON root (``/m/0bl9f``, "Entity") is not a class. A label may occur at several places in
  the tree: its ancestors (descendants) are the union over all places, each once (sets, as the
  newest TF expansion tool).
- Boxes: each row is followed by one copy per ancestor with only the label replaced; never
  de-duplicated (a "Dog" box and a "Mammal" box on one object give two Mammal boxes).
- Image-level labels: positive (confidence 1) -> the row plus one row per ancestor (confidence
  kept); negative -> the row plus one row per descendant.
- Hierarchy nodes that are not in the evaluated class list are walked through but never emitted
  (the evaluator could not score them); classes absent from the hierarchy have no relatives.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from wilddet.data.csr import csr_from_lists, expand_rows
from wilddet.data.records import BoxTable, ClassList, ImageLabelTable
from wilddet.errors import InputError

ROOT_LABEL = "/m/0bl9f"


@dataclass(frozen=True)
class Hierarchy:
    """Relatives of each class code 0..C-1 of a ``ClassList``.

    ancestors[c] / descendants[c]: sorted int32 arrays of class codes (c itself excluded).
    depth[c]: number of classes on the longest root->c chain, c included (1 = top level).
    missing: class labels of the class list that do not occur in the hierarchy.
    """

    ancestors: tuple[np.ndarray, ...]
    descendants: tuple[np.ndarray, ...]
    depth: np.ndarray
    missing: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.ancestors)

    def ancestor_matrix(self) -> np.ndarray:
        """[C, C] bool, ``m[c, a]`` is True when a is an ancestor of c."""
        c = self.num_classes
        m = np.zeros((c, c), dtype=bool)
        for code, anc in enumerate(self.ancestors):
            m[code, anc] = True
        return m

    def self_and_ancestors(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets [C+1] int64, values int32) of [c, ancestors(c)...] per class c."""
        return csr_from_lists([np.concatenate([[c], a]) for c, a in enumerate(self.ancestors)])

    def self_and_descendants(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets [C+1] int64, values int32) of [c, descendants(c)...] per class c."""
        return csr_from_lists([np.concatenate([[c], d]) for c, d in enumerate(self.descendants)])


def expand_boxes(boxes: BoxTable, hierarchy: Hierarchy) -> BoxTable:
    """Copy every box to each ancestor of its class (spec §6); rows keep file order, each original
    row immediately followed by its copies. Coordinates and IsGroupOf are copied unchanged."""
    source, new_labels = expand_rows(boxes.label_codes, *hierarchy.self_and_ancestors())
    out = boxes.take(source)
    return BoxTable(out.image_codes, new_labels.astype(np.int32), out.boxes_norm,
                    out.is_group_of, out.image_ids, out.scores)


def expand_image_labels(labels: ImageLabelTable, hierarchy: Hierarchy) -> ImageLabelTable:
    """Positive rows -> row + ancestors, negative rows -> row + descendants (spec §6)."""
    positive = labels.confidence == 1
    parts = []
    for mask, csr in ((positive, hierarchy.self_and_ancestors()),
                      (~positive, hierarchy.self_and_descendants())):
        rows = np.flatnonzero(mask)
        src, new = expand_rows(labels.label_codes[rows], *csr)
        parts.append((rows[src], new))
    source = np.concatenate([p[0] for p in parts])
    new_labels = np.concatenate([p[1] for p in parts]).astype(np.int32)
    order = np.argsort(source, kind="stable")  # back to file order
    source, new_labels = source[order], new_labels[order]
    out = labels.take(source)
    return ImageLabelTable(out.image_codes, new_labels, out.confidence, out.image_ids)


def parse_hierarchy(tree: dict, classes: ClassList, path: str = "<hierarchy>") -> Hierarchy:
    """Build a ``Hierarchy`` over ``classes`` from the parsed JSON tree."""
    parents: dict[str, set[str]] = {}
    seen: set[str] = set()

    def walk(node: dict, parent: str | None, trail: str) -> None:
        if not isinstance(node, dict) or "LabelName" not in node:
            raise InputError(path, f"expected an object with 'LabelName' at {trail}",
                             field="LabelName")
        label = node["LabelName"]
        if not isinstance(label, str):
            raise InputError(path, f"LabelName must be a string at {trail}", field="LabelName")
        seen.add(label)
        if parent is not None and parent != ROOT_LABEL:
            parents.setdefault(label, set()).add(parent)
        subs = node.get("Subcategory", [])
        if not isinstance(subs, list):
            raise InputError(path, f"Subcategory must be a list at {trail}", field="Subcategory")
        for i, child in enumerate(subs):
            walk(child, label, f"{trail}/{label}[{i}]")

    walk(tree, None, "")
    if tree.get("LabelName") != ROOT_LABEL:
        # A tree without the Entity root: its top node is a class like any other.
        parents.setdefault(tree["LabelName"], set())

    anc_cache: dict[str, frozenset[str]] = {}

    def all_ancestors(label: str, stack: tuple[str, ...] = ()) -> frozenset[str]:
        if label in anc_cache:
            return anc_cache[label]
        if label in stack:
            raise InputError(path, f"cycle in the hierarchy through {label}", field="Subcategory")
        out: set[str] = set()
        for p in parents.get(label, ()):
            out.add(p)
            out |= all_ancestors(p, stack + (label,))
        anc_cache[label] = frozenset(out)
        return anc_cache[label]

    def chain_depth(label: str) -> int:
        ps = [p for p in parents.get(label, ()) if p != ROOT_LABEL]
        return 1 + max((chain_depth(p) for p in ps), default=0)

    n = len(classes)
    ancestors, descendants_sets = [], [set() for _ in range(n)]
    depth = np.zeros(n, dtype=np.int32)
    missing = []
    for code, label in enumerate(classes.labels):
        if label not in seen:
            missing.append(label)
            ancestors.append(np.zeros(0, np.int32))
            depth[code] = 1
            continue
        codes = sorted(classes.index[a] for a in all_ancestors(label) if a in classes.index)
        ancestors.append(np.asarray(codes, dtype=np.int32))
        depth[code] = chain_depth(label)
        for a in codes:
            descendants_sets[a].add(code)
    descendants = tuple(np.asarray(sorted(s), dtype=np.int32) for s in descendants_sets)
    return Hierarchy(tuple(ancestors), descendants, depth, tuple(missing))


def read_hierarchy(path: str | os.PathLike, classes: ClassList) -> Hierarchy:
    """Read ``bbox_labels_600_hierarchy.json``-style JSON; malformed JSON -> InputError with
    line."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = json.load(f)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"malformed JSON: {e.msg} (column {e.colno})",
                         line=e.lineno) from None
    return parse_hierarchy(tree, classes, str(path))
