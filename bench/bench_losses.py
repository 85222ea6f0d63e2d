"""Forward+backward time of the concurrent softmax loss vs F.cross_entropy, same run, same logits.

R = 512 RoIs x 4 images = 2048, K = 500 and 600 (C = K + 1 logit columns). Targets mimic sampled
RoIs: 75 % background, 25 % foreground with 1-3 positive labels (a class and its ancestors).
Rate matrices: "zero" (None: only the multi-hot exclusion), "sparse" (1 % of the pairs
nonzero, like a real confusion-rate matrix) and "dense" (every foreground pair nonzero, the
worst case). Cross-entropy gets the matched label. The two are timed alternately (median of
the repeats each). Default one thread: on a shared 2-core machine more threads mostly measure
the scheduler; ``--threads 0`` keeps torch's default.
Prints the median of the repeats and the ratio CSM / CE. ``--quick`` for a small smoke run;
``--scores`` also times the test-time scores (forward only) against softmax.

    .venv/bin/python bench/bench_losses.py [--quick] [--scores] [--threads N] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from wilddet.losses import concurrent_softmax_loss, concurrent_softmax_scores


def make_inputs(num_rois: int, num_classes: int, density: float, gen: torch.Generator,
                device: str):
    cols = num_classes + 1
    logits = torch.randn(num_rois, cols, generator=gen) * 3
    labels = torch.randint(1, cols, (num_rois,), generator=gen)
    labels[torch.rand(num_rois, generator=gen) < 0.75] = 0  # background RoIs
    targets = F.one_hot(labels, cols).bool()
    fg = (labels > 0).nonzero().squeeze(1)
    extra = torch.randint(1, cols, (len(fg), 2), generator=gen)  # up to 2 "ancestors"
    keep = torch.rand(len(fg), 2, generator=gen) < 0.5
    targets[fg[:, None].expand(-1, 2)[keep], extra[keep]] = True
    rate = torch.rand(cols, cols, generator=gen) * 0.9
    rate[torch.rand(cols, cols, generator=gen) >= density] = 0
    rate.fill_diagonal_(0)
    rate[0] = 0
    rate[:, 0] = 0
    return logits.to(device), labels.to(device), targets.to(device), rate.to(device)


def time_pair(base, candidate, repeats: int, device: str) -> tuple[float, float]:
    """Median seconds of ``base`` and ``candidate``, run alternately so that load from other
    processes hits both alike."""
    def once(fn):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(3):  # warm-up
        base()
        candidate()
    times = [(once(base), once(candidate)) for _ in range(repeats)]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--scores", action="store_true", help="also time test-time scores")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    num_rois, class_counts, repeats = (256, [50], 5) if args.quick else (2048, [500, 600], 51)
    gen = torch.Generator().manual_seed(0)
    print(f"device={args.device} threads={torch.get_num_threads()} R={num_rois} "
          f"repeats={repeats} (median ms)")
    for num_classes in class_counts:
        for name, density in (("zero", 0.0), ("sparse", 0.01), ("dense", 1.0)):
            logits, labels, targets, rate = make_inputs(num_rois, num_classes, density, gen,
                                                        args.device)
            if name == "zero":
                rate = None
            x = logits.clone().requires_grad_()

            def ce(x=x, labels=labels):
                F.cross_entropy(x, labels).backward()

            def csm(x=x, targets=targets, rate=rate):
                concurrent_softmax_loss(x, targets, rate).backward()

            t_ce, t_csm = time_pair(ce, csm, repeats, args.device)
            print(f"K={num_classes} rate={name:6s} loss fwd+bwd: cross_entropy {t_ce * 1e3:7.2f}  "
                  f"csm {t_csm * 1e3:7.2f}  ratio {t_csm / t_ce:5.2f}")
            if args.scores:
                with torch.no_grad():
                    t_sm, t_sc = time_pair(
                        lambda z=logits: torch.softmax(z, 1),
                        lambda z=logits, r=rate: concurrent_softmax_scores(z, r),
                        repeats, args.device)
                print(f"K={num_classes} rate={name:6s} scores fwd:   softmax {t_sm * 1e3:7.2f}  "
                      f"csm {t_sc * 1e3:7.2f}  ratio {t_sc / t_sm:5.2f}")


if __name__ == "__main__":
    main()
