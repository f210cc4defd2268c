"""The Milvus backend answers like faiss: on 10,000 real re-id embeddings (tests/fixtures/market_emb10k.npz, Market-1501
crops embedded by the Market-proxy model; tools/make_embeddings_fixture.py says how), a milvus-lite FLAT collection
returns the ids and distances of faiss's exact search (`Gallery(index='flat')`), with and without exclusions, after
removals, and after the file is closed and opened again."""
import json, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

pytest.importorskip('pymilvus'); pytest.importorskip('milvus_lite')
from reid_nb.gallery import Gallery, open_gallery
from reid_nb.milvus import MilvusGallery

FIX = Path(__file__).resolve().parent/'fixtures'/'market_emb10k.npz'
NQ, K = 100, 10

@pytest.fixture(scope='module')
def data():
    d = np.load(FIX)
    assert d['feats'].shape == (10_000, 128) and json.loads(str(d['notes']))['crops'].startswith('10000 of Market-1501')
    return d['feats'].astype(np.float32), d['pids'], d['camids']

@pytest.fixture(scope='module')
def galleries(data, tmp_path_factory):
    f, p, c = data
    path = tmp_path_factory.mktemp('milvus')/'market.db'
    fg, mg = Gallery(128, 'flat'), MilvusGallery(path, 128, index='flat', meta=dict(source='market_emb10k'))
    for g in (fg, mg): g.add(f[NQ:], pids=p[NQ:], camids=c[NQ:])       # the first NQ are the queries
    return fg, mg, path

def same(a, b):
    "The same hits: equal distances, and equal ids wherever a distance is not tied with its neighbour's."
    np.testing.assert_allclose(a.dist, b.dist, atol=2e-5)
    d = a.dist
    tied = np.zeros_like(d, bool); close = np.abs(np.diff(d, axis=1)) < 2e-5
    tied[:, 1:] |= close; tied[:, :-1] |= close
    assert (a.ids == b.ids)[~tied].all(), np.argwhere((a.ids != b.ids) & ~tied)[:5]
    assert (a.ids != b.ids).mean() < 0.01
    np.testing.assert_array_equal(a.pids[~tied], b.pids[~tied]); np.testing.assert_array_equal(a.camids[~tied], b.camids[~tied])

def test_same_as_faiss_exact(data, galleries):
    f, p, c = data
    fg, mg, _ = galleries
    same(mg.search(f[:NQ], K), fg.search(f[:NQ], K))
    same(mg.search(f[:NQ], K, exclude='same_camera', q_camids=c[:NQ]), fg.search(f[:NQ], K, exclude='same_camera', q_camids=c[:NQ]))
    r = mg.search(f[:NQ], K, exclude='same_camera', q_camids=c[:NQ])
    assert (r.camids != c[:NQ, None]).all()
    kw = dict(exclude='same_id_camera', q_pids=p[:5], q_camids=c[:5])   # one request per query: milvus-lite takes ~0.5 s each
    same(mg.search(f[:5], K, **kw), fg.search(f[:5], K, **kw))
    top = fg.search(f[:NQ], 1).ids[:, 0]
    same(mg.search(f[:NQ], K, exclude=top), fg.search(f[:NQ], K, exclude=top))

def test_remove_and_reopen(data, galleries):
    f, p, c = data
    fg, mg, path = galleries
    gone = np.unique(np.r_[fg.search(f[:NQ], 2).ids.ravel(), np.arange(0, 9_900, 37)])   # the best hits and a spread of others
    assert mg.remove(gone) == fg.remove(gone) == len(gone)
    same(mg.search(f[:NQ], K), fg.search(f[:NQ], K))
    assert len(mg) == len(fg) == 9_900 - len(gone)
    mg.close()
    again = open_gallery(f'milvus://{path}')
    assert isinstance(again, MilvusGallery) and (len(again), again.meta, again.next_id) == (len(fg), dict(source='market_emb10k'), 9_900)
    same(again.search(f[:NQ], K, exclude='same_camera', q_camids=c[:NQ]), fg.search(f[:NQ], K, exclude='same_camera', q_camids=c[:NQ]))
    again.close()

def test_a_new_process_opens_and_searches(data, tmp_path):
    "Written by one process, searched by the next (whose collections start released), as `reid-nb index` then `search` do."
    f = data[0]
    path, n = tmp_path/'small.db', 500
    load = f"import json, numpy as np; f = np.load({str(FIX)!r})['feats'][:{n}].astype(np.float32); "
    runs = [load + f"from reid_nb.milvus import MilvusGallery; g = MilvusGallery({str(path)!r}, 128, index='flat'); g.add(f); g.save(); g.close()",
            load + f"from reid_nb.gallery import open_gallery; print(json.dumps(open_gallery({str(path)!r}).search(f[:5], {K}).ids.tolist()))"]
    for code in runs:
        r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    fg = Gallery(128, 'flat'); fg.add(f[:n])
    assert (np.array(json.loads(r.stdout.splitlines()[-1])) == fg.search(f[:5], K).ids).mean() > 0.95
