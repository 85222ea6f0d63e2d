"""Training step: images/s and peak memory, concurrent softmax vs softmax in the same run.

Models:
- R50-FPN at 800 px (random init; batch 2; the 500 challenge classes with the real Open Images
  hierarchy and the supplementary's Table 2 confusion pairs as the rate matrix);
- the light CPU model of the demo (tiny GroupNorm backbone, 128 px, batch 8, 20 classes).

For each model the two classifier set-ups alternate step by step in one process (so machine
noise hits both alike): "softmax" = torchvision's one-hot cross-entropy, "csm" = multi-hot
targets (IoU > 0.9 duplicates + ancestors) and the concurrent softmax loss. Prints the median
step time, images/s, and the CSM overhead (goal: <= 5 % of the step). Peak memory: the CPU
process's peak RSS (one fresh process per model), or on CUDA ``max_memory_allocated``.

With CUDA: the same on the GPU (bf16 autocast, channels-last) plus torchvision's own
``fasterrcnn_resnet50_fpn`` training step at the same batch as the baseline (goal: our step
>= 1.0x its speed). Without CUDA the GPU part is skipped and says so.

``--quick``: R50 at 320 px, 2 timed steps.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch


def _targets(num_images: int, size: int, num_classes: int, boxes_per_image: int,
             rng: np.random.Generator, device) -> list[dict]:
    """Random boxes; a third of them get a near-duplicate box (IoU > 0.9) of another class."""
    out = []
    for _ in range(num_images):
        xy = rng.uniform(0, size * 0.6, (boxes_per_image, 2))
        wh = rng.uniform(size * 0.1, size * 0.4, (boxes_per_image, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(1, num_classes + 1, boxes_per_image)
        dup = rng.random(boxes_per_image) < 1 / 3
        boxes = np.concatenate([boxes, boxes[dup] + 1.0])
        labels = np.concatenate([labels, rng.integers(1, num_classes + 1, int(dup.sum()))])
        out.append({"boxes": torch.tensor(boxes, dtype=torch.float32, device=device),
                    "labels": torch.tensor(labels, dtype=torch.int64, device=device)})
    return out


def _oid_label_space():
    """500 challenge classes, their hierarchy, and Table 2's pairs as a [K, K] rate."""
    import pandas as pd

    from wilddet.data.hierarchy import read_hierarchy
    from wilddet.data.oid_csv import read_classes
    from wilddet.resources import (
        OID_CHALLENGE_2019_CLASSES_CSV,
        OID_HIERARCHY_JSON,
        SEED_TABLE2_CSV,
    )

    classes = read_classes(OID_CHALLENGE_2019_CLASSES_CSV)
    hierarchy = read_hierarchy(OID_HIERARCHY_JSON, classes)
    rate = np.zeros((len(classes), len(classes)), np.float32)
    pairs = pd.read_csv(SEED_TABLE2_CSV)
    for s, c, r in zip(pairs.source, pairs.confusion, pairs.ratio):
        if s in classes.index and c in classes.index:
            rate[classes.index[s], classes.index[c]] = min(float(r), 1.0)
    return len(classes), hierarchy, rate


def _set_mode(model, mode: str, classifiers: dict) -> None:
    heads = model.roi_heads
    heads.classifier = classifiers[mode]
    heads.multi_hot = mode == "csm"


def _step(model, images, targets, optimizer, device, amp: bool) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        loss = sum(model(images, targets).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_model(name: str, device_name: str, quick: bool, threads: int) -> dict:
    """Time softmax and CSM steps alternately for one model; returns medians and memory."""
    from wilddet.model.build import DetectorSettings, build_model
    from wilddet.model.classifiers import ConcurrentSoftmax, SoftmaxCE

    if threads > 0:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    if name == "r50":
        size, batch, repeats = (320 if quick else 800), 2, (2 if quick else 3)
        k, hierarchy, rate = _oid_label_space()
        settings = DetectorSettings(backbone="resnet50", min_size_px=size,
                                    max_size_px=size * 4 // 3)
        width = size * 4 // 3
    else:
        size, batch, repeats, k = 128, 8, (3 if quick else 10), 20
        rate = np.zeros((k, k), np.float32)
        rate[0, 1] = rate[1, 0] = 0.5
        hierarchy = None
        settings = DetectorSettings(backbone="tiny", min_size_px=size, max_size_px=size,
                                    rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=300,
                                    box_batch_size_per_image=64, rpn_batch_size_per_image=128)
        width = size
    classifiers = {"softmax": SoftmaxCE(k), "csm": ConcurrentSoftmax(k, rate)}
    model = build_model(classifiers["csm"], settings, hierarchy=hierarchy)
    model.to(device).train()
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    images = [torch.rand(3, size, width, device=device) for _ in range(batch)]
    targets = _targets(batch, size, k, 8, rng, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    times = {"softmax": [], "csm": []}
    peak = {}
    for mode in ("softmax", "csm"):  # warm-up both
        _set_mode(model, mode, classifiers)
        _step(model, images, targets, optimizer, device, cuda)
    for _ in range(repeats):
        for mode in ("softmax", "csm"):
            _set_mode(model, mode, classifiers)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            times[mode].append(_step(model, images, targets, optimizer, device, cuda))
            if cuda:
                peak[mode] = torch.cuda.max_memory_allocated() / 2**20
    result = {"name": name, "size": size, "batch": batch, "classes": k,
              "threads": torch.get_num_threads(),
              **{f"{m}_s": statistics.median(v) for m, v in times.items()}}
    if cuda:
        result["peak_mb"] = peak
        result["torchvision_s"] = _torchvision_baseline(images, targets, device, repeats) \
            if name == "r50" else None
    else:
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _torchvision_baseline(images, targets, device, repeats: int) -> float:
    """torchvision's fasterrcnn_resnet50_fpn (91 classes, its own head) at the same batch."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91,
                                    min_size=images[0].shape[1],
                                    max_size=images[0].shape[2]).to(device).train()
    model = model.to(memory_format=torch.channels_last)
    targets = [{"boxes": t["boxes"], "labels": t["labels"] % 90 + 1} for t in targets]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    _step(model, images, targets, optimizer, device, True)
    return statistics.median(_step(model, images, targets, optimizer, device, True)
                             for _ in range(repeats))


def _child(name: str, device: str, quick: bool, threads: int) -> dict:
    """Each model in a fresh process, so peak RSS is that model's own."""
    cmd = [sys.executable, __file__, "--child", name, "--device", device,
           "--threads", str(threads)] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _report(r: dict, device: str) -> None:
    overhead = r["csm_s"] / r["softmax_s"] - 1
    label = "R50-FPN" if r["name"] == "r50" else "light (tiny, demo)"
    mem = (f"peak RSS {r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else
           f"peak GPU memory softmax {r['peak_mb']['softmax']:.0f} MB, "
           f"csm {r['peak_mb']['csm']:.0f} MB")
    print(f"{device} {label}, {r['size']} px, batch {r['batch']}, {r['classes']} classes, "
          f"{r['threads']} thread(s): "
          f"softmax {r['batch'] / r['softmax_s']:.2f} img/s ({r['softmax_s'] * 1e3:.0f} ms/step),"
          f" csm {r['batch'] / r['csm_s']:.2f} img/s ({r['csm_s'] * 1e3:.0f} ms/step); "
          f"CSM overhead {overhead * 100:+.1f}% of the step "
          f"({'meets' if overhead <= 0.05 else 'misses'} the <= 5% goal); {mem}")
    if r.get("torchvision_s"):
        ratio = r["torchvision_s"] / r["csm_s"]
        print(f"   vs torchvision fasterrcnn_resnet50_fpn step {r['torchvision_s'] * 1e3:.0f} ms:"
              f" our CSM step is {ratio:.2f}x its speed (goal >= 1.0x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=["r50", "light"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=-1,
                        help="torch CPU threads (default: 1 for the light model, as the demo "
                             "runs it; torch's default for R50)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_model(args.child, args.device, args.quick, args.threads)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads available")
    for name in ("light", "r50"):
        threads = args.threads if args.threads >= 0 else (1 if name == "light" else 0)
        _report(_child(name, "cpu", args.quick, threads), "CPU")
    if torch.cuda.is_available():
        for name in ("light", "r50"):
            _report(_child(name, "cuda", args.quick, 0), f"GPU ({torch.cuda.get_device_name()})")
    else:
        print("GPU part skipped: CUDA is not available on this machine")


if __name__ == "__main__":
    main()
