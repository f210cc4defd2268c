"""reid_nb.data.datasets on the real Market-1501 training crops.

The data lives outside the repository (never committed): `$REID_NB_MARKET`, else `../shared/data/market1501_train`
relative to the repository root. The tests skip cleanly when it is absent.
"""
import os, warnings
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from reid_nb.data.datasets import market1501, make_query_gallery, validate_frame, DatasetWarning

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get('REID_NB_MARKET', REPO.parent/'shared'/'data'/'market1501_train'))
pytestmark = pytest.mark.skipif(not (ROOT/'bounding_box_train').is_dir(), reason=f"Market-1501 training crops not found at {ROOT}")


@pytest.fixture(scope='module')
def market():
    # our copy holds only bounding_box_train/: the parser reads what exists and warns, naming the missing folders
    with pytest.warns(DatasetWarning) as rec: df = market1501(ROOT)
    return df, [str(w.message) for w in rec]


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
