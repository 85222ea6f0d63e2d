"""The arms of the ablation studies, each one switch away from its neighbour (issue 13 §2).

An ``Arm`` is a trained model (``train``: config overrides; arms with equal overrides share one
model) scored one way (test-time scores, optional overrides of the test-time CSM rate and the
metric's ``expand_detections``). Names are the public spelling of ``--arms`` and of the
``arm`` column of every output.

Loss study (``wilddet experiment losses``): the parts of concurrent softmax and the field's
long-tail losses on the same detector and data:

    softmax          softmax CE on the matched box's label, softmax scores
    softmax_expand   the same detections, each copied to its ancestors before scoring
    softmax_csm      the softmax model scored with CSM (the seed's bsl_csmconf)
    sigmoid          sigmoid BCE on the multi-hot targets (duplicates + ancestors)
    csm_r0           CSM loss with r = 0: only the multi-hot masking; CSM scores
    csm              CSM loss with the analyzer's r; CSM scores
    csm_softmax      the csm model scored with softmax (the seed's cs_sm)
    csm_no_hier      the csm model scored without test-time hierarchy pairs (post-hoc choice)
    eql, eqlv2, federated   sigmoid-family losses, natural (sigmoid) scores
    seesaw           Seesaw loss, natural (softmax) scores
    seesaw_csm       the seesaw model scored with CSM

(CSM scores are a softmax over the logits: they apply to the softmax-family heads (softmax,
Seesaw), not to the sigmoid-family ones (sigmoid, EQL, EQLv2, federated), which have no
competing denominator to relax.)

Sampler study (``wilddet experiment samplers-overfit``), every arm with the base config's loss:

    non_balance, class_aware, class_aware_cyclic, soft_balance_0.25 / _0.5 / _0.75,
    hybrid_nb_first (non-balance then soft-balance 0.5), hybrid_sb_first (the reverse)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wilddet.errors import InputError


@dataclass(frozen=True)
class Arm:
    """name; train: the model's config overrides (``section.field=value``); test_scores: a
    ``model.choices`` name or None (the model's own); csm_test_hierarchy_pairs: None (the
    model's) or the test-time value; expand_detections: the metric's switch."""

    name: str
    train: tuple[str, ...]
    test_scores: str | None = None
    csm_test_hierarchy_pairs: bool | None = None
    expand_detections: bool = False
    note: str = field(default="", compare=False)


def _loss(name: str) -> tuple[str, ...]:
    return (f"model.classifier_loss={name}", f"model.test_scores={name}")


LOSS_ARMS: tuple[Arm, ...] = (
    Arm("softmax", _loss("softmax"), note="softmax CE, softmax scores"),
    Arm("softmax_expand", _loss("softmax"), expand_detections=True,
        note="softmax, detections expanded to ancestors before scoring"),
    Arm("softmax_csm", _loss("softmax"), test_scores="concurrent_softmax",
        note="softmax model, CSM scores"),
    Arm("sigmoid", _loss("sigmoid"), note="sigmoid BCE on multi-hot targets"),
    Arm("csm_r0", (*_loss("concurrent_softmax"), "model.rate_file="),
        note="CSM with r = 0 (multi-hot masking only)"),
    Arm("csm", _loss("concurrent_softmax"), note="CSM with the analyzer's r"),
    Arm("csm_softmax", _loss("concurrent_softmax"), test_scores="softmax",
        note="csm model, softmax scores"),
    Arm("csm_no_hier", _loss("concurrent_softmax"), csm_test_hierarchy_pairs=False,
        note="csm model, test-time CSM without hierarchy pairs"),
    Arm("eql", _loss("eql"), note="EQL, sigmoid scores"),
    Arm("eqlv2", _loss("eqlv2"), note="EQLv2, sigmoid scores"),
    Arm("seesaw", _loss("seesaw"), note="Seesaw, softmax scores"),
    Arm("seesaw_csm", _loss("seesaw"), test_scores="concurrent_softmax",
        note="Seesaw model, CSM scores"),
    Arm("federated", _loss("federated"), note="federated loss, sigmoid scores"),
)

# post-hoc choices: (arm with the project's default, arm without it); tuned on the tuning split
LOSS_POST_HOC = (("csm", "csm_no_hier"),)

SAMPLER_ARMS: tuple[Arm, ...] = (
    Arm("non_balance", ("sampling.kind=non-balance",), note="every image once per epoch"),
    Arm("class_aware", ("sampling.kind=class-aware",), note="class uniformly, then an image"),
    Arm("class_aware_cyclic", ("sampling.kind=class-aware-cyclic",),
        note="Shen et al.'s cyclic class and image lists"),
    *(Arm(f"soft_balance_{lam:g}", ("sampling.kind=soft-balance", f"sampling.lam={lam}"),
          note=f"P(c) ∝ N_c^{lam:g}") for lam in (0.25, 0.5, 0.75)),
    Arm("hybrid_nb_first", ("sampling.kind=hybrid", "sampling.lam=0.5",
                            "sampling.hybrid_order=non-balance-first"),
        note="non-balance, then soft-balance 0.5 (LR decay inside)"),
    Arm("hybrid_sb_first", ("sampling.kind=hybrid", "sampling.lam=0.5",
                            "sampling.hybrid_order=balance-first"),
        note="soft-balance 0.5, then non-balance (LR decay inside)"),
)


def models_of(arms: tuple[Arm, ...] | list[Arm]) -> dict[str, tuple[str, ...]]:
    """Training run name -> overrides: one run per distinct ``train``, named after its first
    arm in ``arms``; the loss arms share runs (softmax / softmax_expand / softmax_csm: one)."""
    out: dict[str, tuple[str, ...]] = {}
    for arm in arms:
        if arm.train not in out.values():
            out[arm.name] = arm.train
    return out


def run_name(arm: Arm, arms) -> str:
    """The name of the training run that ``arm`` scores (see ``models_of``)."""
    return next(name for name, train in models_of(arms).items() if train == arm.train)


def select_arms(available: tuple[Arm, ...], names: str | None) -> list[Arm]:
    """The arms named in a comma-separated ``--arms`` value (all when None or ""), in study
    order; an unknown name is an InputError listing the known ones."""
    if not names:
        return list(available)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {a.name for a in available}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise InputError(None, f"unknown arm(s) {', '.join(unknown)}; known: "
                         f"{', '.join(a.name for a in available)}", field="--arms")
    return [a for a in available if a.name in wanted]


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2] (distinct, >= 0)."""
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(None, f"expected comma-separated integers, got {text!r}",
                         field="--seeds") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise InputError(None, f"seeds must be distinct integers >= 0, got {text!r}",
                         field="--seeds")
    return seeds
