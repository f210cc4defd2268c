"""reid_nb.rerank against the reference implementations it reproduces: FastReID 1.4.0
(`fastreid.evaluation.rerank.re_ranking`, `fastreid.evaluation.query_expansion.aqe`) and torchreid 0.2.5
(`re_ranking`). Skipped when they are not installed (`pip install --no-deps fastreid==1.4.0 torchreid==0.2.5`)."""
import importlib
import numpy as np
import pytest
import torch

from reid_nb.metrics import compute_distance
from reid_nb.rerank import re_ranking, rerank_features, query_expansion

def _import(*names):   # called at import: conftest.py imports this module under the FastReID shim
    for name in names:
        try: return importlib.import_module(name)
        except Exception: pass
    return None

fr_rerank = _import('fastreid.evaluation.rerank')
fr_qe = _import('fastreid.evaluation.query_expansion')
tr_rerank = _import('torchreid.utils.rerank', 'torchreid.reid.utils.rerank')
needs_fastreid = pytest.mark.skipif(fr_rerank is None or fr_qe is None, reason='fastreid 1.4.0 not installed')
needs_torchreid = pytest.mark.skipif(tr_rerank is None, reason='torchreid 0.2.5 not installed')

def clustered(nq, ng, dim, n_ids, seed, noise=0.8):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n_ids, dim, generator=g)[torch.randint(0, n_ids, (nq + ng,), generator=g)]
    f = f + noise * torch.randn(nq + ng, dim, generator=g)
    return f[:nq], f[nq:]

def matrices(kind, nq, ng, seed):
    "The three distance matrices of a random case, as float32 NumPy arrays."
    if kind == 'uniform':      # arbitrary, non-symmetric matrices: exercises the column-max/transpose convention
        rng = np.random.default_rng(seed)
        return [rng.uniform(0.1, 2, s).astype(np.float32) for s in [(nq, ng), (nq, nq), (ng, ng)]]
    qf, gf = clustered(nq, ng, 32, max(2, (nq + ng) // 10), seed)
    return [compute_distance(a, b, kind).numpy() for a, b in [(qf, gf), (qf, qf), (gf, gf)]]

CASES = [  # kind, nq, ng, k1, k2, lambda
    ('cosine', 20, 80, 20, 6, 0.3), ('euclidean', 30, 150, 20, 6, 0.3), ('cosine', 50, 250, 20, 6, 0.3),
    ('cosine', 25, 100, 7, 3, 0.5), ('euclidean', 10, 60, 5, 1, 0.1), ('cosine', 40, 200, 25, 10, 0.0),
    ('euclidean', 15, 90, 11, 4, 1.0), ('uniform', 12, 50, 20, 6, 0.3), ('uniform', 30, 90, 9, 2, 0.4),
    ('cosine', 5, 20, 40, 6, 0.3)]

@needs_fastreid
@pytest.mark.parametrize('seed,case', list(enumerate(CASES)))
def test_re_ranking_vs_fastreid(seed, case):
    kind, nq, ng, k1, k2, lam = case
    mats = matrices(kind, nq, ng, seed)
    expected = fr_rerank.re_ranking(*mats, k1=k1, k2=k2, lambda_value=lam)
    got = re_ranking(*mats, k1=k1, k2=k2, lambda_value=lam)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # torch tensors in, the same numbers out
    np.testing.assert_allclose(re_ranking(*map(torch.as_tensor, mats), k1, k2, lam).numpy(), expected, atol=1e-5, rtol=0)

@needs_torchreid
@pytest.mark.parametrize('seed,case', list(enumerate(CASES)))
def test_re_ranking_vs_torchreid(seed, case):
    kind, nq, ng, k1, k2, lam = case
    mats = matrices(kind, nq, ng, seed + 100)
    np.testing.assert_allclose(re_ranking(*mats, k1=k1, k2=k2, lambda_value=lam),
                               tr_rerank.re_ranking(*mats, k1=k1, k2=k2, lambda_value=lam), atol=1e-5, rtol=0)

@needs_fastreid
@pytest.mark.parametrize('metric', ['cosine', 'euclidean'])
@pytest.mark.parametrize('chunk', [4096, 97])
def test_rerank_features_vs_fastreid(metric, chunk):
    qf, gf = clustered(150, 650, 64, 60, seed=7)
    mats = [compute_distance(a, b, metric).numpy() for a, b in [(qf, gf), (qf, qf), (gf, gf)]]
    expected = fr_rerank.re_ranking(*mats)
    np.testing.assert_allclose(rerank_features(qf, gf, metric, chunk=chunk).numpy(), expected, atol=1e-4, rtol=0)

@needs_fastreid
@pytest.mark.parametrize('qe_times,qe_k,alpha', [(1, 10, 3.0), (2, 5, 3.0), (1, 7, 0.0), (3, 10, 1.0), (1, 1, 3.0)])
def test_query_expansion_vs_fastreid_aqe(qe_times, qe_k, alpha):
    qf, gf = clustered(40, 160, 32, 20, seed=qe_k)
    qf, gf = qf.abs(), gf.abs()       # ReLU-like features: sim**alpha is real for any alpha
    eq, eg = fr_qe.aqe(qf, gf, qe_times, qe_k, alpha)
    gq, gg = query_expansion(qf, gf, qe_times, qe_k, alpha, chunk=64)
    torch.testing.assert_close(gq, eq.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(gg, eg.float(), atol=1e-5, rtol=0)
