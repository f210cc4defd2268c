"""reid_nb.metrics against FastReID 1.4.0's evaluation (`fastreid.evaluation.rank`, `.roc`).

FastReID is only a reference here: installed with `pip install --no-deps fastreid==1.4.0`, never
imported by reid_nb. Skipped when it is absent. Compared where FastReID is correct: every query
keeps at least `max_rank` gallery items (its Python path crashes otherwise, its Cython path reads
stale values).

Ties: FastReID orders rows with `np.argsort` (unstable quicksort; on numpy 2 with AVX-512 a SIMD
sort), so its tie order is build-dependent. reid_nb ranks ties by gallery index, i.e. a *stable*
argsort. Random float distances have no ties, so there the results must agree exactly; for cases
with many ties, FastReID is run with its `np.argsort` made stable and must then agree exactly.
"""
import types, warnings
import numpy as np
import pytest
import torch

with warnings.catch_warnings():   # conftest.py imports this module under the FastReID shim (Python >= 3.10)
    warnings.simplefilter('ignore')
    fr_rank = pytest.importorskip('fastreid.evaluation.rank')
    fr_roc = pytest.importorskip('fastreid.evaluation.roc')

from reid_nb.metrics import compute_distance, evaluate_rank, evaluate_roc

def case(rng, nq, ng, n_ids, n_cams, levels=None):
    qp, gp = rng.integers(0, n_ids, nq), rng.integers(0, n_ids, ng)
    qc, gc = rng.integers(0, n_cams, nq), rng.integers(0, n_cams, ng)
    d = rng.random((nq, ng)).astype(np.float32) if levels is None else (rng.integers(0, levels, (nq, ng)) / levels).astype(np.float32)
    return d, qp, gp, qc, gc

def enough_gallery(qp, gp, qc, gc, max_rank):
    "FastReID's precondition: every query keeps at least max_rank gallery items, and some query is valid."
    junk = (gp[None] == qp[:, None]) & (gc[None] == qc[:, None])
    valid = ((gp[None] == qp[:, None]) & ~junk).any(1)
    return (len(gp) - junk.sum(1)).min() >= max_rank and valid.any()

def fastreid_rank(d, qp, gp, qc, gc, max_rank, cuhk03=False, stable=False):
    "FastReID's Python evaluate_rank; with `stable`, its np.argsort keeps index order for ties."
    if not stable: np_ = np
    else:
        np_ = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith('__')})
        np_.argsort = lambda a, axis=-1: np.argsort(a, axis=axis, kind='stable')
    old, fr_rank.np = fr_rank.np, np_
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return fr_rank.evaluate_rank(d, qp, gp, qc, gc, max_rank=max_rank, use_metric_cuhk03=cuhk03, use_cython=False)
    finally: fr_rank.np = old

def check_market(ours, theirs):
    cmc, aps, inps = theirs
    np.testing.assert_allclose(ours.cmc.numpy(), cmc, atol=1e-6)
    np.testing.assert_allclose(ours.all_AP.numpy(), aps, atol=1e-6)
    np.testing.assert_allclose(ours.all_INP.numpy(), inps, atol=1e-6)
    assert ours.num_valid == len(aps)

@pytest.mark.parametrize('seed', range(5))
def test_rank_random(seed):
    rng = np.random.default_rng(seed)
    done = 0
    while done < 20:
        max_rank = int(rng.integers(1, 30))
        d, qp, gp, qc, gc = case(rng, int(rng.integers(1, 40)), int(rng.integers(max_rank + 10, 200)),
                                 int(rng.integers(2, 30)), int(rng.integers(1, 7)))
        if not enough_gallery(qp, gp, qc, gc, max_rank): continue
        ours = evaluate_rank(d, qp, gp, qc, gc, max_rank=max_rank, chunk_size=int(rng.integers(1, 9)))
        check_market(ours, fastreid_rank(d, qp, gp, qc, gc, max_rank))
        done += 1

@pytest.mark.parametrize('seed', range(3))
def test_rank_ties_with_stable_argsort(seed):
    rng = np.random.default_rng(100 + seed)
    done = 0
    while done < 20:
        d, qp, gp, qc, gc = case(rng, int(rng.integers(1, 30)), int(rng.integers(40, 120)), 6, 3, levels=int(rng.integers(2, 10)))
        if not enough_gallery(qp, gp, qc, gc, 20): continue
        check_market(evaluate_rank(d, qp, gp, qc, gc, max_rank=20), fastreid_rank(d, qp, gp, qc, gc, 20, stable=True))
        done += 1

def test_cuhk03():
    rng = np.random.default_rng(7)
    for _ in range(10):
        # AP does not depend on the draws
        d, qp, gp, qc, gc = case(rng, 20, 80, 10, 2)
        if not enough_gallery(qp, gp, qc, gc, 10): continue
        _, mAP = fastreid_rank(d, qp, gp, qc, gc, 5, cuhk03=True)
        assert abs(evaluate_rank(d, qp, gp, qc, gc, 5, protocol='cuhk03').mAP - mAP) < 1e-6
        # one gallery image per identity: the draws are deterministic, so the CMC must agree too
        gp1 = np.arange(80)
        qp1 = rng.integers(0, 80, 20)
        cmc, mAP = fastreid_rank(d, qp1, gp1, qc, gc, 10, cuhk03=True)
        r = evaluate_rank(d, qp1, gp1, qc, gc, 10, protocol='cuhk03')
        np.testing.assert_allclose(r.cmc.numpy(), cmc, atol=1e-6); assert abs(r.mAP - mAP) < 1e-6

def test_vehicleid():
    "FastReID evaluates VehicleID with one camid per image (nothing removed): our protocol='vehicleid'."
    rng = np.random.default_rng(8)
    for _ in range(10):
        d, qp, gp, _, _ = case(rng, 30, 60, 12, 1)
        qc, gc = np.arange(30), np.arange(30, 90)           # FastReID's camid = image id
        check_market(evaluate_rank(d, qp, gp, rng.integers(0, 2, 30), rng.integers(0, 2, 60), max_rank=20, protocol='vehicleid'),
                     fastreid_rank(d, qp, gp, qc, gc, 20))

def test_roc_pairs_and_tpr():
    "Same pair set as FastReID's evaluate_roc; TPR@FPR (our definition) computed from its pairs with sklearn."
    metrics = pytest.importorskip('sklearn.metrics')
    rng = np.random.default_rng(9)
    for levels in (None, 7):
        d, qp, gp, qc, gc = case(rng, 40, 300, 20, 4, levels=levels)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            scores, labels = fr_roc.evaluate_roc(d, qp, gp, qc, gc, use_cython=False)
        pos, neg = np.sort(scores[labels == 0]), np.sort(scores[labels == 1])   # FastReID: label 0 = same identity
        fprs = (1e-3, 1e-2, 1e-1)
        ours = evaluate_roc(d, qp, gp, qc, gc, fprs=fprs, chunk_size=7)
        assert (ours.num_pos, ours.num_neg) == (len(pos), len(neg))
        # accept when distance <= t: positive class = same identity, score = -distance
        fpr, tpr, _ = metrics.roc_curve(labels == 0, -scores, drop_intermediate=False)
        for f in fprs: assert abs(ours.tpr_at_fpr[f] - tpr[fpr <= f].max()) < 1e-9
        # and the curve: at each of our points, FastReID's pairs give the same TPR and FPR
        for t, a, b in zip(ours.thresholds[1:-1].numpy(), ours.fpr[1:-1].numpy(), ours.tpr[1:-1].numpy()):
            assert abs((neg <= t).mean() - a) < 1e-12 and abs((pos <= t).mean() - b) < 1e-12

def test_distances():
    cd = pytest.importorskip('fastreid.utils.compute_dist')
    torch.manual_seed(0)
    qf, gf = torch.randn(30, 64), torch.randn(50, 64)
    np.testing.assert_allclose(compute_distance(qf, gf, 'cosine').numpy(), cd.compute_cosine_distance(qf, gf), atol=1e-5)
    # FastReID's "euclidean" is the squared distance
    np.testing.assert_allclose(compute_distance(qf, gf, 'euclidean').numpy() ** 2, cd.compute_euclidean_distance(qf, gf), rtol=1e-4, atol=1e-3)
