"""Training image samplers and the hybrid scheduler (method spec §3).

Build a ``ClassImageIndex`` from a ``BoxTable``'s codes, then a sampler or a schedule::

    index = ClassImageIndex.from_codes(boxes.image_codes, boxes.label_codes,
                                       boxes.num_images, len(classes))
    sampler = build_sampler("soft-balance", index, lam=0.5, seed=0)   # or SoftBalanceSampler(...)
    schedule = HybridSchedule([segment(sampler)], batch_size=2, max_iters=90_000, world_size=8)
    schedule = default_hybrid_schedule(index, batch_size=2, max_iters=90_000, world_size=8)
    loader = DataLoader(dataset, batch_sampler=ScheduleBatchSampler(schedule, rank,
                                                                    start_iteration=it))
"""

from wilddet.data.class_index import ClassImageIndex  # re-exported: the samplers' input
from wilddet.sampling.probabilities import (
    class_probabilities,
    expected_class_share,
    non_balance_image_probabilities,
    repeat_factor_image_probabilities,
    repeat_factors,
    soft_balance_image_probabilities,
)
from wilddet.sampling.samplers import (
    ClassAwareSampler,
    IndexSampler,
    NonBalanceSampler,
    RepeatFactorSampler,
    SoftBalanceSampler,
    build_sampler,
)
from wilddet.sampling.schedule import (
    EmptyPhaseError,
    HybridSchedule,
    ScheduleBatchSampler,
    Segment,
    default_hybrid_schedule,
    hybrid_phase_iters,
    mixed_segment,
    segment,
)

__all__ = [
    "ClassAwareSampler",
    "ClassImageIndex",
    "EmptyPhaseError",
    "HybridSchedule",
    "IndexSampler",
    "NonBalanceSampler",
    "RepeatFactorSampler",
    "ScheduleBatchSampler",
    "Segment",
    "SoftBalanceSampler",
    "build_sampler",
    "class_probabilities",
    "default_hybrid_schedule",
    "expected_class_share",
    "hybrid_phase_iters",
    "mixed_segment",
    "non_balance_image_probabilities",
    "repeat_factor_image_probabilities",
    "repeat_factors",
    "segment",
    "soft_balance_image_probabilities",
]
