"""Deployment as a user meets it: `reid-nb export | embed | index | search` run as the console script with output piped,
bad input as one line each, nothing written half-way; the backends agreeing on real-looking crops."""
import json, shutil
from pathlib import Path
import numpy as np
import pytest, torch

from test_cli import reid_nb, _one_line_error   # the console-script runner and the one-line-error check, shared

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from reid_nb.data.synthetic import synthetic_reid
    from reid_nb.models import build_model, save_reid_model
    d = tmp_path_factory.mktemp('deploy')
    df = synthetic_reid(d/'imgs', n_ids=6, imgs_per_id=4, size=(128, 64), seed=0)
    torch.manual_seed(0)
    m = build_model('resnet18', with_ibn=True, pool='gemp', embedding_dim=32).eval()
    save_reid_model(d/'m.pth', m, size=(64, 32))
    return d, df

def test_export_embed_index_search(setup):
    d, df = setup
    cache = d/'cache'
    p = reid_nb('export', '--weights', d/'m.pth', '--format', 'onnx-int8', '--calib', d/'imgs', '-o', d/'m.int8.onnx', cache=cache)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (d/'m.int8.onnx').is_file() and 'wrote' in p.stdout
    p = reid_nb('export', '--weights', d/'m.pth', cache=cache); assert p.returncode == 0, p.stderr[-2000:]
    for w, out in ((d/'m.pth', 'pt.npz'), (d/'m.onnx', 'ox.npz'), (d/'m.int8.onnx', 'i8.npz')):
        p = reid_nb('embed', d/'imgs', '--weights', w, '-o', d/out, '--flip', cache=cache)
        assert p.returncode == 0, p.stderr[-2000:]
        assert '\r' not in p.stdout and '\x1b' not in p.stdout, p.stdout            # no progress bars in a pipe
    pt, ox, i8 = (np.load(d/n) for n in ('pt.npz', 'ox.npz', 'i8.npz'))
    assert pt['feats'].shape == (len(df), 32) and list(pt['paths']) == list(ox['paths'])
    np.testing.assert_allclose(ox['feats'], pt['feats'], atol=1e-4)                 # same numbers, PyTorch or ONNX Runtime
    assert (i8['feats'] * pt['feats']).sum(1).min() > 0.9                           # int8: close, not equal
    p = reid_nb('index', d/'pt.npz', '-o', d/'gal', cache=cache); assert p.returncode == 0, p.stderr[-2000:]
    q = str(pt['paths'][7])
    p = reid_nb('search', q, '--gallery', d/'gal', '-k', 4, '--plot', d/'r.png', cache=cache)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert lines[0] == f"query {q}" and lines[1].endswith(q), p.stdout                # an image finds itself first
    assert (d/'r.png').stat().st_size > 0
    info = json.loads((d/'gal'/'gallery.json').read_text())
    assert info['meta']['weights'] == str((d/'m.pth').resolve()) and info['size'] == len(df)

def test_bad_input_is_one_line(setup):
    d, df = setup
    from reid_nb.core import load_checkpoint, save_checkpoint
    from reid_nb.models import build_model, save_reid_model
    cache = d/'cache'
    if not (d/'gal').is_dir():
        assert reid_nb('embed', d/'imgs', '--weights', d/'m.pth', '-o', d/'pt.npz', cache=cache).returncode == 0
        assert reid_nb('index', d/'pt.npz', '-o', d/'gal', cache=cache).returncode == 0
    q = str(df.path[0])
    _one_line_error(reid_nb('search', q, '--gallery', d/'gal', '-k', 1000, cache=cache), 'k=1000 but the gallery holds')
    save_reid_model(d/'other.pth', build_model('osnet_x0_25').eval(), size=(64, 32))             # another model: 128-d
    _one_line_error(reid_nb('search', q, '--gallery', d/'gal', '--weights', d/'other.pth', cache=cache), 'dimension 128, the gallery 32')
    ck = load_checkpoint(d/'m.pth'); ck['build']['arch'] = 'resnet34'; del ck['reid_nb_version']  # a checkpoint of another architecture
    save_checkpoint(d/'arch.pth', ck)
    _one_line_error(reid_nb('export', '--weights', d/'arch.pth', cache=cache), 'arch.pth', 'missing')
    (d/'notes').mkdir(exist_ok=True); (d/'notes'/'a.jpg').write_text('not an image')
    _one_line_error(reid_nb('embed', d/'notes', '--weights', d/'m.pth', '-o', d/'n.npz', cache=cache), 'no readable image')
    assert not (d/'n.npz').exists()
    shutil.copytree(d/'gal', d/'gal_v0', dirs_exist_ok=True)
    info = json.loads((d/'gal_v0'/'gallery.json').read_text()); info['version'] = 0
    (d/'gal_v0'/'gallery.json').write_text(json.dumps(info))
    _one_line_error(reid_nb('search', q, '--gallery', d/'gal_v0', cache=cache), 'format version 0')
    _one_line_error(reid_nb('index', d/'m.pth', '-o', d/'g2', cache=cache), 'not written by reid-nb embed')
    _one_line_error(reid_nb('export', '--weights', d/'missing.pth', cache=cache), 'missing.pth')

def test_gallery_save_is_atomic(tmp_path, monkeypatch):
    "A save that fails half-way leaves the earlier gallery as it was, and no temporary folder."
    import faiss
    from reid_nb.gallery import Gallery
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    g = Gallery(8, 'flat'); g.add(x[:20]); g.save(tmp_path/'g')
    g.add(x[20:])
    def boom(*a, **k): raise OSError('disk full')
    monkeypatch.setattr(faiss, 'write_index', boom)
    with pytest.raises(OSError): g.save(tmp_path/'g')
    assert len(Gallery.load(tmp_path/'g')) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ['g']

def test_export_failure_writes_nothing(tmp_path, monkeypatch):
    "A parity failure leaves no file behind (the exported graph is written beside the target, then removed)."
    import reid_nb.export as ex
    from reid_nb.models import build_model
    m = build_model('resnet18').eval()
    def fail(*a, **k): raise ex.ExportParityError('disagrees')
    monkeypatch.setattr(ex, 'check_parity', fail)
    with pytest.raises(ex.ExportParityError): ex.export_onnx(m, tmp_path/'m.onnx', size=(64, 32))
    assert list(tmp_path.iterdir()) == []
