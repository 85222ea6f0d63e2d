"""``wilddet convert``: Open Images CSV <-> COCO / LVIS json (ground truth and detections).

    wilddet convert --to coco|lvis --boxes B.csv --classes C.csv [--image-labels L.csv]
                    [--hierarchy H.json] (--images DIR | --image-sizes SIZES.csv) --out GT.json
    wilddet convert --to oid --gt GT.json --out DIR
    wilddet convert --to coco --detections D.csv --gt GT.json --out RESULTS.json
    wilddet convert --to oid --detections RESULTS.json --gt GT.json --out D.csv

The mappings are in ``wilddet.data.coco`` (and the README); nothing is written unless every
input checks out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from wilddet.data.coco import convert as conv

_Opt = typer.Option


def _bad(message: str, hint: str):
    raise typer.BadParameter(message, param_hint=hint)


def convert(
    to: Annotated[str, _Opt("--to", help="Target format: coco, lvis or oid.")],
    out: Annotated[Path, _Opt("--out", help="Output: GT.json, RESULTS.json, D.csv, or a folder "
                              "(--to oid --gt).")],
    boxes: Annotated[Path | None, _Opt("--boxes", help="Open Images boxes CSV.")] = None,
    classes: Annotated[Path | None, _Opt("--classes", help="Class descriptions CSV.")] = None,
    image_labels: Annotated[Path | None, _Opt("--image-labels", help="Verified image-level "
                                              "labels CSV.")] = None,
    hierarchy: Annotated[Path | None, _Opt("--hierarchy", help="Class hierarchy json.")] = None,
    images: Annotated[Path | None, _Opt("--images", help="Image folder (sizes read from the "
                                        "file headers).")] = None,
    image_sizes: Annotated[Path | None, _Opt("--image-sizes", help="SIZES.csv with "
                                             "ImageID,width,height.")] = None,
    gt: Annotated[Path | None, _Opt("--gt", help="COCO / LVIS ground-truth json.")] = None,
    detections: Annotated[Path | None, _Opt("--detections", help="Detections to convert: an "
                                            "Open Images CSV (--to coco) or a COCO results json "
                                            "(--to oid).")] = None,
) -> None:
    """Convert annotations or detections between Open Images CSV and COCO / LVIS json."""
    target: Literal["coco", "lvis", "oid"] = to.lower()  # type: ignore[assignment]
    if target not in ("coco", "lvis", "oid"):
        _bad(f"{to!r} is not coco, lvis or oid", "--to")
    console = Console(stderr=True)
    if detections is not None:
        if gt is None:
            _bad("converting detections needs --gt GT.json", "--gt")
        if target == "lvis":
            _bad("detections convert to coco (a results file is the same for LVIS) or oid",
                 "--to")
        if target == "coco":
            n = conv.detections_csv_to_results(detections, gt, out)
        else:
            n = conv.results_to_detections_csv(detections, gt, out)
        console.print(f"wrote {n} detections to {out}")
        return
    if target == "oid":
        if gt is None:
            _bad("--to oid needs --gt GT.json (and --detections to convert results)", "--gt")
        paths = conv.coco_file_to_oid(gt, out)
        console.print("wrote " + ", ".join(str(p) for p in paths))
        return
    if boxes is None or classes is None:
        _bad(f"--to {target} needs --boxes and --classes", "--boxes")
    if (images is None) == (image_sizes is None):
        _bad("give exactly one of --images DIR or --image-sizes SIZES.csv", "--images")
    counts = conv.oid_files_to_coco(boxes, classes, out, kind=target, image_labels=image_labels,
                                 hierarchy=hierarchy, images=images, image_sizes=image_sizes)
    console.print(f"wrote {out}: {counts['images']} images, {counts['annotations']} "
                  f"annotations, {counts['categories']} categories ({target})")


__all__ = ["convert"]
