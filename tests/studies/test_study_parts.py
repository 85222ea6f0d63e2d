"""The study's pure parts: arms one switch apart and shared models, class groups, and the
ranked outcomes of a scored split against the challenge metric."""

import numpy as np
import pytest

from wilddet.data.records import BoxTable, ClassList, ImageLabelTable
from wilddet.errors import InputError
from wilddet.stats.bootstrap import point_ap
from wilddet.studies.arms import (
    LOSS_ARMS,
    SAMPLER_ARMS,
    models_of,
    parse_seeds,
    run_name,
    select_arms,
)
from wilddet.studies.class_groups import class_groups
from wilddet.studies.scoring import GroundTruth, score_images, split_tune_test


def test_loss_arms_share_models_and_differ_by_one_switch():
    models = models_of(LOSS_ARMS)
    assert list(models) == ["softmax", "sigmoid", "csm_r0", "csm", "eql", "eqlv2", "seesaw",
                            "federated"]
    by_name = {a.name: a for a in LOSS_ARMS}
    assert run_name(by_name["softmax_expand"], LOSS_ARMS) == "softmax"
    assert run_name(by_name["csm_no_hier"], LOSS_ARMS) == "csm"
    # the seed's Figure 1 grid: csm-train + sm-test scores the csm model with softmax
    assert run_name(by_name["csm_softmax"], LOSS_ARMS) == "csm"
    assert by_name["csm_softmax"].test_scores == "softmax" and by_name["csm"].test_scores is None
    assert set(by_name["csm_r0"].train) - set(by_name["csm"].train) == {"model.rate_file="}
    assert by_name["softmax_expand"].expand_detections and not by_name["softmax"].expand_detections
    # selecting a subset names runs after the first selected arm of each model
    chosen = select_arms(LOSS_ARMS, "softmax_expand,csm")
    assert [a.name for a in chosen] == ["softmax_expand", "csm"]
    assert list(models_of(chosen)) == ["softmax_expand", "csm"]
    assert len(models_of(SAMPLER_ARMS)) == len(SAMPLER_ARMS) == 8


def test_bad_selections_are_input_errors():
    with pytest.raises(InputError, match="unknown arm"):
        select_arms(SAMPLER_ARMS, "class_aware,nope")
    for text in ("0,0", "a", "-1", ""):
        with pytest.raises(InputError):
            parse_seeds(text)
    assert parse_seeds("2, 0,1") == [2, 0, 1]


def test_class_groups_never_mix_parents_into_frequency_bins():
    classes = ClassList(np.array(["/m/p", "/m/a", "/m/b", "/m/c"], dtype=object),
                        np.array(["P", "A", "B", "C"], dtype=object))
    tree_anc = [np.zeros(0, np.int32), np.array([0], np.int32), np.array([0], np.int32),
                np.zeros(0, np.int32)]
    tree_desc = [np.array([1, 2], np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32),
                 np.zeros(0, np.int32)]

    class FakeHierarchy:  # P > A, B; C alone (class_groups reads .descendants)
        descendants = tree_desc
        ancestors = tree_anc

    groups = class_groups(classes, FakeHierarchy(), np.array([500, 5, 50, 200]),
                          {"d_synonym": ["/m/a", "/m/b"], "control": []})
    assert groups["parents"].tolist() == [True, False, False, False]
    assert groups["leaves_Nc_1-10"].tolist() == [False, True, False, False]
    assert groups["leaves_Nc_11-100"].tolist() == [False, False, True, False]
    assert groups["leaves_Nc_>100"].tolist() == [False, False, False, True]  # not the parent
    assert groups["d_synonym"].tolist() == [False, True, True, False]
    assert groups["leaves_plain"].tolist() == [False, False, False, True]


def _tables():
    ids = np.array(["i0", "i1", "i2"], dtype=object)
    gt = BoxTable(np.array([0, 0, 1, 2], np.int32), np.array([0, 1, 0, 0], np.int32),
                  np.array([[0, 0, .5, .5], [.5, .5, 1, 1], [0, 0, .4, .4], [0, 0, 1, 1]],
                           np.float32), np.array([False, False, False, True]), ids)
    labels = ImageLabelTable(np.array([0, 1, 2], np.int32), np.array([0, 1, 1], np.int32),
                             np.array([1, 0, 1], np.int8), ids)
    dets = BoxTable(np.array([0, 0, 1, 1, 2, 2, 0], np.int32),
                    np.array([0, 1, 0, 1, 0, 0, 0], np.int32),
                    np.array([[0, 0, .5, .5], [.5, .5, 1, 1], [.6, .6, 1, 1], [0, 0, .3, .3],
                              [.1, .1, .3, .3], [.2, .2, .4, .4], [0, 0, .48, .5]], np.float32),
                    np.zeros(7, bool), ids, np.array([.9, .6, .7, .4, .8, .3, .55], np.float32))
    return gt, labels, dets


def test_outcomes_reproduce_the_metric_and_count_confident_detections():
    gt, labels, dets = _tables()
    scored = score_images(dets, GroundTruth(gt, labels, None), ["i0", "i1", "i2"], 2)
    ap = np.asarray(scored.result.ap)
    assert np.allclose(point_ap(scored.outcomes, 2), ap, equal_nan=True)
    # group-of box in i2: both class-0 detections inside it make one TP entry
    assert (scored.outcomes.weights > 0).sum() == 3
    assert scored.high_total == 5  # scores >= 0.5: .9 .6 .7 .8 .55
    assert scored.high_scored_per_class.tolist() == [4, 1]
    assert scored.high_tp_per_class.tolist() == [2, 1]  # i0's 0.9 and i2's group-of; i0's c1
    sub = score_images(dets, GroundTruth(gt, labels, None), ["i0", "i2"], 2)
    assert sub.outcomes.num_images == 2 and set(sub.outcomes.images.tolist()) <= {0, 1}
    assert np.allclose(point_ap(sub.outcomes, 2), sub.result.ap, equal_nan=True)


def test_tune_test_halves_partition_val():
    ids = [f"{k:04d}" for k in range(11)]
    tune, test = split_tune_test(ids, seed=3)
    assert len(tune) == 5 and len(test) == 6 and sorted(tune + test) == ids
    assert split_tune_test(ids, seed=3) == (tune, test) and split_tune_test(ids, 4) != (tune, test)


def test_study_config_is_the_documented_set_up():
    from pathlib import Path

    from wilddet.config import load_config

    path = Path(__file__).resolve().parents[2] / "configs" / "study.toml"
    config = load_config(path, [])
    assert (config.model.min_size_px, config.model.max_size_px) == (96, 96)
    assert config.train.max_iters * config.train.batch_size >= 10 * 800  # >= 10 epochs
    assert config.optim.lr_schedule == "step" and config.sampling.non_balance_fraction == 0.5
    assert 2 / 3 >= config.sampling.non_balance_fraction  # LR steps inside the last phase
    assert config.train.num_threads == 1
