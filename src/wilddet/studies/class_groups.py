"""The class groups a study reports apart (issue 13 §2), as [C] bool masks.

Shapes: ``C`` classes.

- ``all``; ``leaves`` (classes without descendants in the hierarchy); ``parents`` (the others);
- the planted cases of a synthetic data set (``synth.json``, see ``data.synthetic``):
  ``a_co_label``, ``b_explicit_duplicate`` (leaves), ``b_parents``, ``c_parent_label``
  (leaves), ``c_parents``, ``d_synonym``, ``control`` (look-alike pairs); ``leaves_plain``: the
  leaves in no planted case;
- leaves by training frequency N_c (training images holding the leaf), never mixing parents:
  ``leaves_Nc_1-10``, ``leaves_Nc_11-100``, ``leaves_Nc_>100`` (LVIS's rare / common /
  frequent cut points).

A group is reported over its classes that have val ground truth (the mean AP skips NaN).
"""

from __future__ import annotations

import numpy as np

from wilddet.data.hierarchy import Hierarchy
from wilddet.data.records import ClassList

FREQUENCY_BINS = ((1, 10), (11, 100), (101, None))  # N_c ranges, inclusive
CASE_GROUPS = ("a_co_label", "b_explicit_duplicate", "b_parents", "c_parent_label",
               "c_parents", "d_synonym", "control")


def frequency_bin_name(lo: int, hi: int | None) -> str:
    return f"leaves_Nc_{lo}-{hi}" if hi is not None else f"leaves_Nc_>{lo - 1}"


def class_groups(classes: ClassList, hierarchy: Hierarchy | None, images_per_class: np.ndarray,
                 planted: dict[str, list[str]] | None = None) -> dict[str, np.ndarray]:
    """name -> [C] bool mask (module docstring). ``images_per_class`` [C]: N_c of the training
    set (raw box labels); ``planted``: ``data.synthetic.planted_case_classes`` or None."""
    num = len(classes)
    if hierarchy is None:
        leaves = np.ones(num, dtype=bool)
    else:
        leaves = np.asarray([len(hierarchy.descendants[c]) == 0 for c in range(num)])
    groups = {"all": np.ones(num, dtype=bool), "leaves": leaves, "parents": ~leaves}
    labels = classes.labels.astype(str)
    if planted is not None:
        in_case = np.zeros(num, dtype=bool)
        for name in CASE_GROUPS:
            groups[name] = np.isin(labels, np.asarray(planted.get(name, []), dtype=str))
            in_case |= groups[name]
        groups["leaves_plain"] = leaves & ~in_case
    n_c = np.asarray(images_per_class)
    for lo, hi in FREQUENCY_BINS:
        inside = (n_c >= lo) & (n_c <= (hi if hi is not None else np.inf))
        groups[frequency_bin_name(lo, hi)] = leaves & inside
    return groups


def group_names_of(groups: dict[str, np.ndarray], code: int) -> list[str]:
    """The groups (other than ``all``) that class ``code`` belongs to."""
    return [name for name, mask in groups.items() if name != "all" and mask[code]]
