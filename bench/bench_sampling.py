"""Benchmark the samplers at Open Images challenge scale (issue 7).

Default: 1.7M images, 12M boxes, 500 long-tailed classes (Zipf-like, random arrays from numpy).
Targets: ClassImageIndex + sampler construction < 10 s, drawing 1M indices < 1 s per sampler.
Baselines timed in the same run:
  - construction: a Python loop building dict-of-sets image->classes / class->images on the first
    ``--loop-boxes`` boxes, against ClassImageIndex.from_codes on the same subset;
  - drawing: torch.multinomial(per-image weights, 1M, replacement=True) with the same P(k).
Run: .venv/bin/python bench/bench_sampling.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from wilddet.data.class_index import ClassImageIndex
from wilddet.sampling import (
    ClassAwareSampler,
    NonBalanceSampler,
    RepeatFactorSampler,
    SoftBalanceSampler,
    default_hybrid_schedule,
)


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def make_arrays(num_images, num_boxes, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_classes + 1) ** 1.1  # long tail
    labels = rng.choice(num_classes, num_boxes, p=weights / weights.sum()).astype(np.int32)
    # every image gets >= 1 box, the rest land at random
    images = np.concatenate([np.arange(num_images),
                             rng.integers(0, num_images, num_boxes - num_images)]).astype(np.int32)
    rng.shuffle(images)
    return images, labels


def loop_index(images, labels):
    """Naive baseline: Python dict-of-sets."""
    by_image, by_class = {}, {}
    for i, c in zip(images.tolist(), labels.tolist()):
        by_image.setdefault(i, set()).add(c)
        by_class.setdefault(c, set()).add(i)
    return ({k: sorted(v) for k, v in by_image.items()},
            {k: sorted(v) for k, v in by_class.items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-boxes", type=int, default=300_000)
    args = ap.parse_args()
    num_images, num_boxes, num_classes, num_draws = 1_700_000, 12_000_000, 500, 1_000_000
    if args.quick:
        num_images, num_boxes, num_classes, num_draws = 20_000, 140_000, 50, 100_000
        args.loop_boxes = min(args.loop_boxes, 20_000)
    r = args.repeats
    images, labels = make_arrays(num_images, num_boxes, num_classes)
    print(f"data: {num_images} images, {num_boxes} boxes, {num_classes} classes; "
          f"medians of {r} repeats")

    t_index, index = timed(lambda: ClassImageIndex.from_codes(images, labels, num_images,
                                                              num_classes), r)
    n_c = index.images_per_class
    print(f"ClassImageIndex.from_codes: {t_index:.3f} s ({index.num_pairs} image-class pairs; "
          f"N_c from {n_c.min()} to {n_c.max()})")
    sub_i, sub_l = images[:args.loop_boxes], labels[:args.loop_boxes]
    t_loop, _ = timed(lambda: loop_index(sub_i, sub_l), 1)
    t_sub, _ = timed(lambda: ClassImageIndex.from_codes(sub_i, sub_l, num_images, num_classes), r)
    print(f"  baseline on {args.loop_boxes} boxes: python dict-of-sets loop {t_loop:.3f} s, "
          f"from_codes {t_sub:.3f} s -> {t_loop / t_sub:.1f}x faster")

    builders = {
        "non-balance": lambda: NonBalanceSampler(index, seed=0),
        "class-aware": lambda: ClassAwareSampler(index, seed=0, num_samples_per_epoch=num_draws),
        "soft-balance(0.5)": lambda: SoftBalanceSampler(index, 0.5, seed=0,
                                                         num_samples_per_epoch=num_draws),
        "repeat-factor(0.001)": lambda: RepeatFactorSampler(index, 0.001, seed=0,
                                                            num_samples_per_epoch=num_draws),
    }
    print(f"{'sampler':22s} {'build s':>8s} {'+index s':>9s} {'draw s':>8s}  note")
    for name, build in builders.items():
        t_build, _ = timed(build, r)
        # a fresh sampler per repeat: nothing cached
        t_draw, seq = timed(lambda build=build: build().epoch_sequence(0), r)
        note = (f"one epoch = permutation of all {num_images}" if name == "non-balance"
                else f"{len(seq)} draws")
        flag = "" if t_index + t_build < 10 and t_draw < 1 else "  ** over target **"
        print(f"{name:22s} {t_build:8.3f} {t_index + t_build:9.3f} {t_draw:8.3f}  {note}{flag}")

    probs = torch.from_numpy(SoftBalanceSampler(index, 0.5).image_probabilities())
    gen = torch.Generator().manual_seed(0)
    t_mult, _ = timed(lambda: torch.multinomial(probs, num_draws, replacement=True,
                                                generator=gen), r)
    t_soft, _ = timed(lambda: builders["soft-balance(0.5)"]().epoch_sequence(0), r)
    print(f"baseline torch.multinomial over {num_images} image weights, {num_draws} draws: "
          f"{t_mult:.3f} s; soft-balance class-then-image draw {t_soft:.3f} s -> "
          f"{t_mult / t_soft:.1f}x faster")

    sched = default_hybrid_schedule(index, batch_size=16, max_iters=200_000, world_size=8)
    its = list(range(2000))
    t_batches, _ = timed(lambda: [sched.batch_indices(i, 3) for i in its], 1)
    print(f"HybridSchedule.batch_indices: {1e6 * t_batches / len(its):.1f} us per rank batch "
          f"(16 per rank, 8 ranks; first call per epoch draws the epoch)")


if __name__ == "__main__":
    main()
