"""Training image samplers and the hybrid scheduler (method spec §3).

Build a ``ClassImageIndex`` from a ``BoxTable``'s codes, then a sampler or a schedule::

    index = ClassImageIndex.from_codes(boxes.image_codes, boxes.label_codes,
                                       boxes.num_images, len(classes))
    sampler = SoftBalanceSampler(index, lam=0.5, seed=0, rank=rank, world_size=world_size)
    schedule = default_hybrid_schedule(index, batch_size=2, max_iters=90_000, world_size=8)
    loader = DataLoader(dataset, batch_sampler=ScheduleBatchSampler(schedule, rank,
                                                                    start_iteration=it))
"""

from wilddet.sampling.probabilities import (
    ClassImageIndex,
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
)
from wilddet.sampling.schedule import (
    HybridSchedule,
    ScheduleBatchSampler,
    Segment,
    default_hybrid_schedule,
    mixed_segment,
    segment,
)

__all__ = [
    "ClassAwareSampler",
    "ClassImageIndex",
    "HybridSchedule",
    "IndexSampler",
    "NonBalanceSampler",
    "RepeatFactorSampler",
    "ScheduleBatchSampler",
    "Segment",
    "SoftBalanceSampler",
    "class_probabilities",
    "default_hybrid_schedule",
    "expected_class_share",
    "mixed_segment",
    "non_balance_image_probabilities",
    "repeat_factor_image_probabilities",
    "repeat_factors",
    "segment",
    "soft_balance_image_probabilities",
]
