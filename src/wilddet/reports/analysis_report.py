"""``report.md`` of ``wilddet analyze``: imbalance, explicit multi-labels, confusion pairs (laid
out like Table 2 of the seed) and, when given, verified image-level labels.

Shapes: ``C`` classes, ``P`` confusion pairs, ``k`` listed classes. Pure text rendering.
"""

from __future__ import annotations

import numpy as np

from wilddet.data.records import ClassList
from wilddet.reports.markdown import markdown_table
from wilddet.stats.analysis import Analysis
from wilddet.stats.confusion import ConfusionPairs

TABLE2_COLUMNS = 10  # pairs per block, as the seed's Table 2


def _name(classes: ClassList, code: int) -> str:
    return f"{classes.names[code]}"


def render_table2(pairs: ConfusionPairs, classes: ClassList, columns: int = TABLE2_COLUMNS) -> str:
    """The pairs as the seed's Table 2: blocks of ``columns`` pairs, one row each for source
    classes, confusion classes, #source bboxes, #confusion bboxes (plus the ratio)."""
    if len(pairs) == 0:
        return "_No confusion pair reaches the ratio cut._"
    blocks = []
    for lo in range(0, len(pairs), columns):
        sl = slice(lo, lo + columns)
        header = ["Source Classes"] + [_name(classes, c) for c in pairs.source[sl]]
        rows = [["Confusion Classes"] + [_name(classes, c) for c in pairs.confusion[sl]],
                ["#Source bboxes"] + [int(x) for x in pairs.source_boxes[sl]],
                ["#Confusion bboxes"] + [int(x) for x in pairs.confusion_boxes[sl]],
                ["Confusion ratio"] + [f"{x:.4f}" for x in pairs.ratio[sl]]]
        blocks.append(markdown_table(header, rows, "l" + "r" * (len(header) - 1)))
    return "\n\n".join(blocks)


def _imbalance_section(r: Analysis) -> list[str]:
    s, classes, c = r.imbalance, r.classes, r.counts
    summary = (f"{s.num_boxes:,} boxes of {s.num_classes} classes in {r.num_images:,} images "
               f"({int(c.group_of_boxes.sum()):,} group-of boxes). "
               f"Imbalance ratio (most / fewest boxes, classes with boxes): "
               f"**{s.imbalance_ratio:,.1f}**; Gini coefficient of boxes per class: "
               f"**{s.gini:.3f}**; median boxes per class: {s.median_boxes:,.0f}; "
               f"classes without any box: {s.num_empty}.")
    out = ["## Class imbalance", "", summary, ""]
    for title, codes in (("Head (most boxes)", s.head), ("Tail (fewest boxes, at least one)",
                                                         s.tail)):
        rows = [[classes.names[k], classes.labels[k], int(c.boxes[k]), int(c.images[k]),
                 int(c.group_of_boxes[k])] for k in codes]
        out += [f"**{title}**", "",
                markdown_table(["class", "label", "boxes", "images", "group-of boxes"], rows,
                               "llrrr"), ""]
    if s.num_empty:
        empty = [str(classes.names[k]) for k in np.flatnonzero(c.boxes == 0)]
        shown = ", ".join(empty[:30]) + (f", ... ({len(empty) - 30} more)" if len(empty) > 30
                                         else "")
        out += [f"Classes without boxes: {shown}.", ""]
    out += ["![boxes per class](imbalance.png)", ""]
    return out


def _multilabel_section(r: Analysis) -> list[str]:
    m, classes = r.multilabel, r.classes
    if m is None:
        return ["## Explicit multi-labels", "",
                "_No hierarchy given (`--hierarchy`): labels are not expanded._", ""]
    share = m.boxes_with_ancestors / m.num_boxes if m.num_boxes else 0.0
    summary = (f"Expanding every box to its ancestor classes (as the challenge metric does): "
               f"**{m.boxes_with_ancestors:,}** of {m.num_boxes:,} boxes ({share:.1%}) gain at "
               f"least one ancestor label; the expansion adds {m.added_boxes:,} boxes "
               f"({m.num_boxes + m.added_boxes:,} in all). {m.classes_with_ancestors} of "
               f"{len(classes)} classes have an ancestor class.")
    out = ["## Explicit multi-labels", "", summary, ""]
    rows = [[n, int(b), f"{b / m.num_boxes:.1%}" if m.num_boxes else "-"]
            for n, b in enumerate(m.labels_per_box) if n > 0 and b > 0]
    out += ["**Labels per box after expansion**", "",
            markdown_table(["labels", "boxes", "share"], rows, "rrr"), ""]
    if len(m.deepest):
        rows = [[classes.names[c], len(ch) - 1, " > ".join(str(classes.names[k]) for k in ch)]
                for c, ch in zip(m.deepest, m.chains)]
        out += [("**Deepest label chains** (ancestors top first; a class under several parents "
                 "lists all of them)"), "",
                markdown_table(["class", "ancestors", "labels of one box"], rows, "lrl"), ""]
    if r.expanded is not None:
        e = r.expanded
        gain = e.boxes - r.counts.boxes
        top = np.lexsort((np.arange(len(gain)), -gain))[:10]
        rows = [[classes.names[k], int(r.counts.boxes[k]), int(e.boxes[k]), int(e.images[k])]
                for k in top if gain[k] > 0]
        if rows:
            out += ["**Classes gaining the most boxes from their descendants**", "",
                    markdown_table(["class", "boxes", "boxes expanded", "images expanded"], rows,
                                   "lrrr"),
                    ""]
    return out


def _confusion_section(r: Analysis) -> list[str]:
    p = r.pairs
    num_sources = len(np.unique(p.source)) if len(p) else 0
    summary = (f"Within one image, boxes of different classes with IoU > "
               f"{r.iou_threshold} are confusion boxes; ratio = #confusion "
               f"bboxes / #source bboxes. **{len(p)}** ordered pairs ({num_sources} source "
               f"classes) have ratio >= {r.min_ratio} (sorted by ratio, "
               f"largest first; the same layout as Table 2 of the seed).")
    return ["## Implicit multi-labels: confusion pairs", "", summary, "",
            render_table2(p, r.classes), "", "![strongest confusion pairs](confusion.png)", ""]


def _image_label_section(r: Analysis) -> list[str]:
    if r.image_labels is None:
        return []
    pos, neg = r.image_labels
    classes, boxes = r.classes, r.counts.boxes
    no_pos = int(((pos == 0) & (boxes > 0)).sum())
    summary = (f"{int(pos.sum()):,} verified positive and {int(neg.sum()):,} verified negative "
               f"image-level labels; {no_pos} classes with boxes have no verified positive label "
               f"(the metric ignores detections of classes not verified for an image).")
    out = ["## Verified image-level labels", "", summary, ""]
    rows = [[classes.names[k], classes.labels[k], int(boxes[k]), int(r.counts.images[k]),
             int(pos[k]), int(neg[k])] for k in range(len(classes))]
    out += ["<details><summary>Per class</summary>", "",
            markdown_table(["class", "label", "boxes", "images with boxes", "verified positive",
                    "verified negative"], rows, "llrrrr"), "", "</details>", ""]
    return out


def render_report(r: Analysis, settings: dict[str, object] | None = None,
                  files: tuple[str, ...] = ()) -> str:
    """The whole report.md text; ``settings``: option -> value (rendered as given), ``files``:
    the output files listed at the top."""
    lines = ["# Label analysis", ""]
    if settings:
        lines += [markdown_table(["setting", "value"], [[k, v] for k, v in settings.items()]), ""]
    if files:
        lines += ["Files: " + ", ".join(f"`{f}`" for f in files), ""]
    lines += _imbalance_section(r)
    lines += _multilabel_section(r)
    lines += _confusion_section(r)
    lines += _image_label_section(r)
    return "\n".join(lines).rstrip() + "\n"
