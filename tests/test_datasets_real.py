"""reid_nb.data.datasets on real crops: the Market-1501 training split and a CUHK03 camera pair.

The data lives outside the repository (never committed): `$REID_NB_MARKET`, else `../shared/data/market1501_train`,
and `$REID_NB_CUHK03` (as for bench/cross_domain.py), else `../shared/data/cuhk03_pair1_train`, relative to the
repository root. Each test skips cleanly when its data is absent.
"""
import os, warnings
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from reid_nb.data.datasets import market1501, make_query_gallery, validate_frame, DatasetWarning, cuhk03_pairs, cross_domain_split

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get('REID_NB_MARKET', REPO.parent/'shared'/'data'/'market1501_train'))
CUHK = Path(os.environ.get('REID_NB_CUHK03', REPO.parent/'shared'/'data'/'cuhk03_pair1_train'))
needs_market = pytest.mark.skipif(not (ROOT/'bounding_box_train').is_dir(), reason=f"Market-1501 training crops not found at {ROOT}")
needs_cuhk = pytest.mark.skipif(not (CUHK/'images').is_dir(), reason=f"CUHK03 camera-pair crops not found at {CUHK}")


@pytest.fixture(scope='module')
def market():
    # our copy holds only bounding_box_train/: the parser reads what exists and warns, naming the missing folders
    with pytest.warns(DatasetWarning) as rec: df = market1501(ROOT)
    return df, [str(w.message) for w in rec]


@needs_market
def test_market_train_only(market):
    df, msgs = market
    assert len(df) == 12936
    assert df.pid.nunique() == 751
    assert sorted(df.camid.unique()) == [0, 1, 2, 3, 4, 5]
    assert set(df.split) == {'train'} and set(df.dataset) == {'market1501'}
    assert df.pid.min() >= 1 and df.pid.max() <= 1501                  # no junk / distractors in train, pids not relabelled
    assert df.attrs['skipped'] == [] and df.attrs['junk'] == {}
    missing = ' '.join(df.attrs['missing_splits'])
    assert 'query' in missing and 'bounding_box_test' in missing
    assert any('query' in m and 'bounding_box_test' in m and 'not found' in m for m in msgs), msgs
    # an independent parse of the names: 0002_c1s1_000451_03.jpg -> pid 2, camid 0
    names = df.path.map(lambda p: Path(p).name)
    assert (names.str.slice(0, 4).astype(int) == df.pid).all()
    assert (names.str.slice(6, 7).astype(int) - 1 == df.camid).all()
    with pytest.raises(FileNotFoundError, match='bounding_box_test'): market1501(ROOT, strict=True)


@needs_market
def test_market_query_gallery(market):
    df, _ = market
    s = make_query_gallery(df, n_test_ids=375, seed=0)
    validate_frame(s)
    assert len(s) == len(df) and (s.path.values == df.path.values).all()        # no row dropped, order kept
    train_ids, test_ids = set(s.pid[s.split == 'train']), set(s.pid[s.split != 'train'])
    assert len(test_ids) == 375 and len(train_ids) == 751 - 375 and not train_ids & test_ids
    q, g = s[s.split == 'query'], s[s.split == 'gallery']
    assert not q.duplicated(['pid', 'camid']).any()                              # <= 1 query per identity per camera
    # every query has a gallery image of its identity from another camera
    gal_cams = g.groupby('pid').camid.apply(set).to_dict()
    assert all(gal_cams.get(p, set()) - {c} for p, c in zip(q.pid, q.camid))
    # every identity seen by >= 2 cameras gives queries (Market has 1..6 cameras per identity)
    n_cams = s[s.split != 'train'].groupby('pid').camid.nunique()
    assert set(q.pid) == set(n_cams.index[n_cams >= 2])
    assert len(q) > 375                                                          # several cameras per identity
    s2 = make_query_gallery(df, n_test_ids=375, seed=0)
    assert (s2.split.values == s.split.values).all()                             # deterministic per seed
    s3 = make_query_gallery(df, n_test_ids=375, seed=1)
    assert set(s3.pid[s3.split != 'train']) != test_ids


@pytest.fixture(scope='module')
def pairs(): return cuhk03_pairs(CUHK)


@needs_cuhk
def test_cuhk03_pairs(pairs):
    # the README's counts: 7,239 crops of 743 identities, every identity seen by both cameras
    assert len(pairs) == 7239 and pairs.pid.nunique() == 743
    assert pairs.attrs['skipped'] == [] and set(pairs.split) == {'train'} and set(pairs.dataset) == {'cuhk03_pairs'}
    assert (pairs.groupby('pid').camid.nunique() == 2).all()
    # an independent parse of the names: 0003_07.jpg -> pid 3, image 7 -> camera B (camid 1)
    names = pairs.path.map(lambda p: Path(p).name)
    assert (names.str.slice(0, 4).astype(int) == pairs.pid).all()
    assert ((names.str.slice(5, 7).astype(int) >= 5).astype(int) == pairs.camid).all()


@needs_cuhk
def test_cross_domain_split(pairs):
    adapt, test = cross_domain_split(pairs, seed=0)
    q, g = test[test.split == 'query'], test[test.split == 'gallery']
    # the split that bench/cross_domain.py, 35_pseudo_labels and 36_adapt report
    assert (len(adapt), adapt.pid.nunique(), len(q), len(g)) == (3626, 371, 372, 1816)
    assert not set(adapt.pid) & set(test.pid) and adapt.pid.nunique() + test.pid.nunique() == 743
    assert q.pid.is_unique and set(q.camid) == {0} and set(g.camid) == {1} and set(q.pid) == set(g.pid)
    # every image is in exactly one place, or is a camera-A image of a test identity that was not drawn as its query
    unused = pairs.pid.isin(test.pid) & (pairs.camid == 0) & ~pairs.path.isin(q.path)
    assert len(adapt) + len(test) + unused.sum() == len(pairs)
    assert set(g.path) == set(pairs.path[pairs.pid.isin(test.pid) & (pairs.camid == 1)])
