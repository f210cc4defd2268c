"""bench/_common.py, the scaffolding every benchmark shares: the Market-1501 proxy split, the atomic result write,
provenance, synthetic features; and the rule that benches share it instead of importing each other.

The split is checked on a fake Market-1501 folder (empty files with Market's names) against what the names say."""
import ast, datetime, importlib.util, json, os, platform, re, stat
from pathlib import Path
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO/'bench'
_spec = importlib.util.spec_from_file_location('bench_common', BENCH/'_common.py')
common = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(common)

# identity -> cameras (1-based, as in the names); two images per camera, so every camera of a test identity gets a query
CAMS = {pid: list(range(1, 2 + pid % 4 + 1)) for pid in range(1, 13)}

@pytest.fixture
def market(tmp_path):
    d = tmp_path/'Market-1501-v15.09.15'/'bounding_box_train'; d.mkdir(parents=True)
    for pid, cams in CAMS.items():
        for c in cams:
            for k in range(2): (d/f'{pid:04d}_c{c}s1_{100 * c + k:06d}_01.jpg').touch()
    return tmp_path

def _names(root):
    "(pid, camera) of each training file, read from the names with a plain loop."
    out = []
    for p in sorted((Path(root)/'Market-1501-v15.09.15'/'bounding_box_train').iterdir()):
        pid, rest = p.name.split('_', 1)
        out.append((int(pid), int(rest[1])))
    return out

def test_split_follows_the_protocol(market):
    df = common.market_proxy(market, n_test_ids=6, seed=3)
    files = _names(market)
    assert len(df) == len(files) and sorted(zip(df.pid, df.camid + 1)) == sorted(files)   # every image, once
    train, test = set(df.pid[df.split == 'train']), set(df.pid[df.split != 'train'])
    assert not train & test and len(test) == 6 and train | test == set(CAMS)              # disjoint identity halves
    for pid in test:
        q, g = df[(df.pid == pid) & (df.split == 'query')], df[(df.pid == pid) & (df.split == 'gallery')]
        assert sorted(q.camid + 1) == CAMS[pid]                                           # one query per camera
        assert len(q) + len(g) == sum(p == pid for p, _ in files)                         # the rest is gallery
    assert df.attrs['split_seed'] == 3
    note = common.proxy_note(df)
    assert f"{len(train)} train identities" in note and "6 test identities" in note and "seed 3" in note

def test_split_seed_is_fixed(market):
    a, b = common.market_proxy(market, 6, seed=3), common.market_proxy(market, 6, seed=3)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(common.market_proxy(market, 6), common.market_proxy(market, 6, seed=common.SPLIT_SEED))
    tests = {frozenset(common.market_proxy(market, 6, seed=s).query('split != "train"').pid) for s in range(4)}
    assert len(tests) > 1                                                                 # the seed does draw the split

def test_split_uses_train_only_and_limits(market):
    off = market/'Market-1501-v15.09.15'
    for sub in ('query', 'bounding_box_test'):
        (off/sub).mkdir(); (off/sub/'0100_c1s1_000001_01.jpg').touch()                    # the official folders, when present
    df = common.market_proxy(market, 2, limit_ids=4)
    assert set(df.pid) == {1, 2, 3, 4} and len(df) == sum(p <= 4 for p, _ in _names(market))

def test_market_root(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv('REID_NB_MARKET', raising=False)
    assert common.market_root() == REPO.parent/'shared'/'data'/'market1501_train'
    monkeypatch.setenv('REID_NB_MARKET', str(tmp_path))
    assert common.market_root() == tmp_path and common.market_root('/x') == Path('/x')
    assert not common.market_found(tmp_path) and 'skipped' in capsys.readouterr().out

def test_save_json_is_atomic(tmp_path, monkeypatch):
    path = tmp_path/'sub'/'r.json'
    common.save_json({'a': [1, 2.5], 'b': None}, path)
    assert json.loads(path.read_text()) == {'a': [1, 2.5], 'b': None}
    umask = os.umask(0); os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask                           # readable as any new file
    with pytest.raises(TypeError): common.save_json({'a': {1, 2}}, path)                 # not JSON: nothing touched
    def crash(*a): raise OSError('disk gone')
    monkeypatch.setattr(common.os, 'replace', crash)
    with pytest.raises(OSError): common.save_json({'a': 'new'}, path)                    # fails at the last step
    assert json.loads(path.read_text()) == {'a': [1, 2.5], 'b': None}                    # the old result, whole
    assert [p.name for p in path.parent.iterdir()] == ['r.json']                          # no temporary file left

def test_provenance():
    p = common.provenance('/anywhere/bench/eval.py', ['--cases', 'toy', 'a b'], threads=3)
    assert list(p) == ['bench', 'command', 'date', 'hardware', 'commit', 'versions']
    assert p['bench'] == 'eval' and p['command'] == "python bench/eval.py --cases toy 'a b'"
    date = datetime.datetime.fromisoformat(p['date'])
    assert date.utcoffset() == datetime.timedelta(0) and abs(datetime.datetime.now(datetime.timezone.utc) - date).total_seconds() < 60
    assert re.fullmatch(r'[0-9a-f]{7,}(\+dirty)?|unknown', p['commit'])
    assert f"({os.cpu_count()} cores visible), 3 threads" in p['hardware']
    assert p['versions']['python'] == platform.python_version() and torch.__version__.split('+')[0] == p['versions']['torch']

def test_synthetic_features():
    (qf, qp, qc), (gf, gp, gc) = common.synthetic_features(40, 300, ids=8, cams=3, dim=64, seed=1)
    assert qf.shape == (40, 64) and gf.shape == (300, 64) and len(qp) == len(qc) == 40 and len(gp) == len(gc) == 300
    torch.testing.assert_close(gf.norm(dim=1), torch.ones(300))
    again = common.synthetic_features(40, 300, ids=8, cams=3, dim=64, seed=1)
    assert torch.equal(again[1][0], gf)
    sim, same_id = gf @ gf.T, gp[:, None] == gp[None]
    same_cam, off = gc[:, None] == gc[None], ~torch.eye(300, dtype=torch.bool)
    assert sim[same_id & off].mean() > sim[~same_id].mean() + 0.1                          # identities cluster
    assert sim[~same_id & same_cam].mean() > sim[~same_id & ~same_cam].mean()              # cameras shift

def test_benches_share_common_and_import_no_bench():
    benches = {p.stem for p in BENCH.glob('*.py')}
    for p in sorted(BENCH.glob('*.py')):
        src = p.read_text()
        for n in ast.walk(ast.parse(src)):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module] if isinstance(n, ast.ImportFrom) else []
            assert not [m for m in mods if m in benches - {'_common'}], f"{p.name} imports another bench: {mods}"
        if 'save_json(' in src and p.stem != '_common':
            assert 'provenance(' in src, f"{p.name} writes a result without the provenance block"
        assert 'REID_MARKET_ROOT' not in src and 'collections.Mapping =' not in src, p.name   # one variable, one scoped shim
