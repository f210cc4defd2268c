"""Video re-id end to end, as a user runs it: a MARS-layout tree -> `reid-nb train` with configs/MARS -> `reid-nb eval`
(the same numbers), `reid-nb embed --tracks` (one vector per track), and the video config keys' one-line refusals.
The command runs in this process (`reid_nb.cli.main`, what the console script calls: no interpreter start-ups), with
`reid_nb.video` imported first until the package is reinstalled with this branch's entry points (META_ARCHS 'video_*')."""
import json, os
from pathlib import Path
import numpy as np
import pytest, yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

def reid_nb(capsys, *args, cache=None):
    "Run `reid-nb ARGS` in this process (the console script's `main`): (exit code, stdout, stderr)."
    from reid_nb import video  # noqa: F401 -- the video meta-architectures (entry points register them once installed)
    from reid_nb.cli import main
    old = os.environ.get('REID_NB_CACHE')
    os.environ['REID_NB_CACHE'] = str(cache or '')
    try: rc = main([str(a) for a in args])
    finally:
        if old is None: os.environ.pop('REID_NB_CACHE', None)
        else: os.environ['REID_NB_CACHE'] = old
    out = capsys.readouterr()
    return rc, out.out, out.err

def _one_line_error(rc, stderr, *words):
    assert rc == 2, (rc, stderr[-2000:])
    err = [l for l in stderr.splitlines() if l.strip() and not l.startswith('reid-nb: warning:')]
    assert 'Traceback' not in stderr and len(err) == 1 and err[0].startswith('reid-nb: error:'), stderr[-2000:]
    for w in words: assert w in err[0], (w, err[0])

def _img(p, pid, k):
    p.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1000 * pid + k)
    base = np.array([(pid * 53) % 256, (pid * 97) % 256, (pid * 29) % 256], np.uint8)   # each identity its own colour, noisy frames
    Image.fromarray(np.clip(base + rng.integers(-20, 20, (64, 32, 3)), 0, 255).astype(np.uint8)).save(p)

def _mars(root:Path):
    "A MARS tree: 4 train identities × 2 tracks × 4 frames; 3 test identities, each a camera-1 query track and two camera-2 gallery tracks."
    from scipy.io import savemat
    info = root/'MARS'/'info'; info.mkdir(parents=True)
    for part, pids, cams in (('train', range(1, 5), (1, 2)), ('test', range(11, 14), (1, 2, 2))):
        names, tracks = [], []
        for pid in pids:
            for t, cam in enumerate(cams):
                first = len(names) + 1
                for f in range(4):
                    n = f"{pid:04d}C{cam}T{t + 1:04d}F{f + 1:03d}.jpg"; names.append(n)
                    _img(root/'MARS'/f'bbox_{part}'/n[:4]/n, pid, 10 * t + f)
                tracks.append([first, len(names), pid, cam])
        (info/f'{part}_name.txt').write_text('\n'.join(names) + '\n')
        savemat(info/f'tracks_{part}_info.mat', {f'track_{part}_info': np.array(tracks)})
    savemat(info/'query_IDX.mat', {'query_IDX': np.array([[1, 4, 7]])})   # the camera-1 track of each test identity

def _ilids(root:Path):
    "iLIDS-VID's layout: 6 persons × 2 cameras × 3 frames; 2 splits, each testing 3 persons (the first half of its row)."
    from scipy.io import savemat
    for cam in ('cam1', 'cam2'):
        for p in range(1, 7):
            for f in range(3): _img(root/'i-LIDS-VID'/'sequences'/cam/f"person{p:03d}"/f"{cam}_person{p:03d}_{f:05d}.png", p + 20, 10 * (cam == 'cam2') + f)
    (root/'train-test people splits').mkdir()
    savemat(root/'train-test people splits'/'train_test_splits_ilidsvid.mat', {'ls_set': np.array([[1, 2, 3, 4, 5, 6], [4, 5, 6, 1, 2, 3]])})

def _config(tmp_path, base='bagtricks_R50.yml', **extra):
    cfg = {'_BASE_': str(ROOT/'configs'/'MARS'/base),
           'MODEL': {'BACKBONE': {'NAME': 'build_osnet_backbone', 'DEPTH': 'x0_25', 'FEAT_DIM': 128, 'PRETRAIN': False}},
           'INPUT': {'SIZE_TRAIN': [64, 32], 'SIZE_TEST': [64, 32], 'SEQ_LEN': 2},
           'DATALOADER': {'NUM_WORKERS': 0, 'NUM_INSTANCE': 2}, 'SOLVER': {'IMS_PER_BATCH': 4, 'AMP': {'ENABLED': False}, 'BASE_LR': 0.001},
           'TEST': {'IMS_PER_BATCH': 8}, 'OUTPUT_DIR': str(tmp_path/'out')}
    for k, v in extra.items(): cfg[k] = {**cfg.get(k, {}), **v}
    f = tmp_path/'mars.yml'; f.write_text(yaml.safe_dump(cfg)); return f

def test_mars_train_eval_embed(tmp_path, capsys):
    data, cache = tmp_path/'data', tmp_path/'cache'
    _mars(data)
    f = _config(tmp_path)
    rc, out, err = reid_nb(capsys, 'train', '--config-file', f, '--root', data, '--epochs', 1, cache=cache)
    assert rc == 0, err[-3000:]
    assert out.startswith('train: 4 identities, 8 tracklets of 2 frames') and 'test: 3 query / 6 gallery tracklets' in out, out[:300]
    res = json.loads((tmp_path/'out'/'results.json').read_text())
    assert res['Queries'] == '3/3', res
    ck = tmp_path/'out'/'checkpoints'/'last.pth'
    rc, out, err = reid_nb(capsys, 'eval', '--root', data, '--weights', ck, cache=cache)   # the checkpoint knows its recipe: tracklets of 2 frames
    assert rc == 0, err[-3000:]
    row = [l for l in out.splitlines() if l.startswith('| MARS')][0]
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1] == '3/3' and float(cells[2]) == pytest.approx(res['Rank-1'], abs=0.006) and float(cells[5]) == pytest.approx(res['mAP'], abs=0.006), (row, res)
    # embed tracks: one vector per track folder = the normalised mean of its frames' embeddings (embedded one by one here)
    tracks = tmp_path/'tracks'
    for t, pid in enumerate((11, 12)):
        for k in range(3): _img(tracks/f"{pid:04d}_c1_t{t}"/f"{k}.jpg", pid, k)
    out = tmp_path/'tracks.npz'
    rc, text, err = reid_nb(capsys, 'embed', tracks, '--weights', ck, '--out', out, '--tracks', cache=cache)
    assert rc == 0 and 'embedded 2 tracks' in text, err[-2000:]
    d = np.load(out)
    assert d['feats'].shape[0] == 2 and d['pids'].tolist() == [11, 12] and [Path(p).name for p in d['paths']] == ['0011_c1_t0', '0012_c1_t1']
    from reid_nb.embed import Embedder
    emb = Embedder(str(ck))
    for i, t in enumerate(sorted(tracks.iterdir())):
        v = emb([str(t/f"{k}.jpg") for k in range(3)]).mean(0)
        np.testing.assert_allclose(d['feats'][i], v / np.linalg.norm(v), atol=1e-5)
    # a gallery of track vectors; an image query finds its track first (image-to-tracklet search)
    rc, _, err = reid_nb(capsys, 'index', out, '--out', tmp_path/'gallery', cache=cache)
    assert rc == 0, err[-2000:]
    rc, text, err = reid_nb(capsys, 'search', tracks/'0012_c1_t1'/'0.jpg', '--gallery', tmp_path/'gallery', '-k', 2, cache=cache)
    assert rc == 0, err[-2000:]
    hits = [l.split() for l in text.splitlines() if l.startswith('    1  ') or l.startswith('    2  ')]
    assert [Path(h[-1]).name for h in hits] == ['0012_c1_t1', '0011_c1_t0'], text
    rc, _, err = reid_nb(capsys, 'embed', out, '--weights', ck, '--out', tmp_path/'x.npz', '--tracks', cache=cache)
    _one_line_error(rc, err, 'is not a folder of track folders')

def test_video_config_refusals(tmp_path):
    from reid_nb.fastreid import recipe_from_config
    from reid_nb.config import load_config
    from reid_nb import video  # noqa: F401 -- registers the video meta-architectures (entry points do, once installed)
    r = recipe_from_config(load_config(ROOT/'configs'/'MARS'/'bagtricks_R50-TA.yml'))
    assert (r['model']['meta_arch'], r['data']['seq_len'], r['data']['sample'], r['run']['datasets']) == ('video_attention', 4, 'restricted', ['MARS'])
    assert 'seq_len' not in recipe_from_config(load_config(ROOT/'configs'/'Market1501'/'bagtricks_R50.yml'))['data']
    for opts, words in ((['MODEL.TEMPORAL', 'lstm'], ["MODEL.TEMPORAL = 'lstm'", "'attention'"]),
                        (['INPUT.SEQ_LEN', '0'], ['MODEL.TEMPORAL', 'INPUT.SEQ_LEN', 'go together']),
                        (['INPUT.SEQ_LEN', '0', 'MODEL.TEMPORAL', '', 'INPUT.SAMPLE_METHOD', 'evenly'], ['INPUT.SAMPLE_METHOD', 'SEQ_LEN > 0'])):
        with pytest.raises(Exception) as e: recipe_from_config(load_config(ROOT/'configs'/'MARS'/'bagtricks_R50.yml', opts))
        assert '\n' not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)

def test_ilids_splits_averaged(tmp_path, capsys):
    "reid-nb eval --splits N: each standard split evaluated, the mean reported; one line for a set without splits."
    data, cache = tmp_path/'data', tmp_path/'cache'
    _ilids(data)
    f = _config(tmp_path, DATASETS={'NAMES': ['iLIDSVID'], 'TESTS': ['iLIDSVID']})
    from reid_nb import video  # noqa: F401
    from reid_nb.models import build_model, save_reid_model
    ck = tmp_path/'v.pth'
    save_reid_model(ck, build_model('osnet_x0_25', pretrained=False, meta_arch='video_mean'), size=(64, 32))
    rc, out, err = reid_nb(capsys, 'eval', '--config-file', f, '--weights', ck, '--root', data, '--splits', 2, cache=cache)
    assert rc == 0, err[-2000:]
    head, _, row = [[c.strip() for c in l.strip('|').split('|')] for l in out.strip().splitlines()[-3:]]
    got = dict(zip(head, row))
    # reference: each split on its own, from the parser and the loaders, averaged by hand
    from reid_nb.data.video import ilids_vid
    from reid_nb.data.loaders import reid_dataloaders
    from reid_nb.evaluate import reid_eval
    from reid_nb.models import load_reid_model
    m = load_reid_model(ck)
    r1 = [reid_eval(m, d.query, d.gallery).cmc[0].item() * 100 for d in
          (reid_dataloaders(ilids_vid(data, split_id=i).query("split != 'train'"), size=(64, 32), seq_len=2) for i in range(2))]
    assert got['splits'] == '2' and float(got['Rank-1']) == pytest.approx(np.mean(r1), abs=0.006), (got, r1)
    rc, _, err = reid_nb(capsys, 'eval', '--weights', ck, '--config-file', _config(tmp_path), '--root', data, '--splits', 2, cache=cache)
    _one_line_error(rc, err, 'MARS has no standard splits')
