"""Deployment as a user meets it: `reid-nb export | embed | index | search` run as the console script with output piped,
bad input as one line each, nothing written half-way; the backends agreeing on real-looking crops; OpenVINO as one more
registry entry (parity, atomic writes, refusal without the package); the files the previous version wrote still load."""
import json, os, shutil, signal, sys
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
    p = reid_nb('export', '--weights', d/'m.pth', '--format', 'openvino', cache=cache); assert p.returncode == 0, p.stderr[-2000:]
    assert (d/'m.xml').is_file() and (d/'m.bin').is_file()
    for w, out in ((d/'m.pth', 'pt.npz'), (d/'m.onnx', 'ox.npz'), (d/'m.int8.onnx', 'i8.npz'), (d/'m.xml', 'ov.npz')):
        p = reid_nb('embed', d/'imgs', '--weights', w, '-o', d/out, '--flip', cache=cache)
        assert p.returncode == 0, p.stderr[-2000:]
        assert '\r' not in p.stdout and '\x1b' not in p.stdout, p.stdout            # no progress bars in a pipe
    pt, ox, i8, ov = (np.load(d/n) for n in ('pt.npz', 'ox.npz', 'i8.npz', 'ov.npz'))
    assert pt['feats'].shape == (len(df), 32) and list(pt['paths']) == list(ox['paths'])
    np.testing.assert_allclose(ox['feats'], pt['feats'], atol=1e-4)                 # same numbers, PyTorch or ONNX Runtime
    np.testing.assert_allclose(ov['feats'], pt['feats'], atol=1e-4)                 # ... or OpenVINO
    for f in (pt, ox, ov):                                                          # the model's description, the test size spelled out
        meta = json.loads(str(f['meta']))
        assert (meta['size_test'], meta['arch'], meta['flip'], meta['dim']) == ([64, 32], 'resnet18', True, 32), meta
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
    p = reid_nb('search', q, '--gallery', d/'gal', '-k', 1000, cache=cache)           # more than the gallery: clamped, with a note
    assert p.returncode == 0 and f"note: -k 1000 but {d/'gal'} holds {len(df)} images: showing all {len(df)}" in p.stdout, p.stdout[-500:] + p.stderr[-500:]
    assert sum(' dist ' in l for l in p.stdout.splitlines()) == len(df)
    _one_line_error(reid_nb('search', q, '--gallery', d/'gal', '-k', 0, cache=cache), '-k must be 1 or more')
    save_reid_model(d/'other.pth', build_model('osnet_x0_25').eval(), size=(64, 32))             # another model: 128-d
    _one_line_error(reid_nb('search', q, '--gallery', d/'gal', '--weights', d/'other.pth', cache=cache), 'dimension 128, the gallery 32')
    ck = load_checkpoint(d/'m.pth'); ck['build']['arch'] = 'resnet34'; del ck['reid_nb_version']  # a checkpoint of another architecture
    save_checkpoint(d/'arch.pth', ck)
    _one_line_error(reid_nb('export', '--weights', d/'arch.pth', cache=cache), 'arch.pth', 'missing')
    (d/'notes').mkdir(exist_ok=True); (d/'notes'/'a.jpg').write_text('not an image')
    _one_line_error(reid_nb('embed', d/'notes', '--weights', d/'m.pth', '-o', d/'n.npz', cache=cache), 'none of the 1 images', 'a.jpg')
    assert not (d/'n.npz').exists()
    shutil.copytree(d/'gal', d/'gal_v0', dirs_exist_ok=True)
    info = json.loads((d/'gal_v0'/'gallery.json').read_text()); info['version'] = 0
    (d/'gal_v0'/'gallery.json').write_text(json.dumps(info))
    _one_line_error(reid_nb('search', q, '--gallery', d/'gal_v0', cache=cache), 'format version 0')
    _one_line_error(reid_nb('index', d/'m.pth', '-o', d/'g2', cache=cache), 'not written by reid-nb embed')
    _one_line_error(reid_nb('export', '--weights', d/'missing.pth', cache=cache), 'missing.pth')
    # a setting the format does not take is refused, not dropped; int8 without crops is refused before any work
    _one_line_error(reid_nb('export', '--weights', d/'m.pth', '--format', 'openvino', '--calib', d/'imgs', cache=cache),
                    '--format openvino takes no calib')
    _one_line_error(reid_nb('export', '--weights', d/'m.pth', '--float-convs', 2, cache=cache), '--format onnx takes no float_convs')
    _one_line_error(reid_nb('export', '--weights', d/'m.pth', '--format', 'onnx-int8', '--calib', d/'nowhere', cache=cache), 'nowhere')
    _one_line_error(reid_nb('embed', d/'imgs', '--weights', d/'m.h5', '-o', d/'x.npz', cache=cache), 'm.h5')

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

# --- OpenVINO: one exporter entry and one runtime entry ----------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A tiny timm ResNet checkpoint (training size 64×32, test size 48×24) and its OpenVINO IR."
    from reid_nb.models import build_model, save_reid_model
    from reid_nb.export import export_openvino
    d = tmp_path_factory.mktemp('ov')
    torch.manual_seed(0)
    m = build_model('test_resnet', num_classes=4, pretrained=False).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d): mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5)
    save_reid_model(d/'tiny.pth', m, size=(64, 32), size_test=(48, 24))
    return d, m, export_openvino(d/'tiny.pth', d/'ir'/'tiny.xml')

def test_openvino_parity(tiny):
    "The IR computes the model (cosine >= 0.9999 per row at batch 1, 3, 8, by numpy here); Embedder('m.xml') = Embedder(model)."
    from reid_nb.embed import Embedder
    from reid_nb.runtime import OpenVINOBackend, load_backend
    d, m, xml = tiny
    be = load_backend(xml)
    assert isinstance(be, OpenVINOBackend) and be.meta.input_size() == (48, 24) and be.meta.size == (64, 32)
    for b in (1, 3, 8):
        x = torch.rand(b, 3, 48, 24)
        with torch.no_grad(): ref = m(x).double().numpy()
        got = be(x).double().numpy()
        assert got.shape == ref.shape
        cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
        assert cos.min() >= 0.9999, (b, cos)
    crops = [np.random.default_rng(i).integers(0, 256, (100, 45, 3), dtype=np.uint8) for i in range(6)]
    np.testing.assert_allclose(Embedder(xml, flip=True)(crops), Embedder(m, size=(48, 24), flip=True)(crops), atol=1e-4)

def test_openvino_failed_export_leaves_old_pair(tiny, monkeypatch):
    "A parity failure or a Ctrl-C while the IR is written leaves the earlier pair as it was and no temporary folder."
    import openvino as ov
    import reid_nb.export as ex
    d, m, xml = tiny
    before = {p.name: p.read_bytes() for p in xml.parent.iterdir()}
    with pytest.raises(ex.ExportParityError): ex.export_openvino(d/'tiny.pth', xml, min_cos=1.01)
    def interrupted(model, path, **kw):
        Path(path).write_text('<half an xml')
        raise KeyboardInterrupt
    monkeypatch.setattr(ov, 'save_model', interrupted)
    with pytest.raises(KeyboardInterrupt): ex.export_openvino(d/'tiny.pth', xml)
    assert {p.name: p.read_bytes() for p in xml.parent.iterdir()} == before

def test_openvino_ctrl_c_waits_for_the_pair(tiny, tmp_path, monkeypatch):
    "Ctrl-C while the .bin is moved in is held back until the .xml is in too: a whole new pair, then the interrupt."
    from reid_nb.export import export_openvino
    from reid_nb.runtime import OpenVINOBackend
    d, m, xml = tiny
    real = os.replace
    def replace(src, dst):
        if str(dst).endswith('.bin'): os.kill(os.getpid(), signal.SIGINT)
        return real(src, dst)
    monkeypatch.setattr(os, 'replace', replace)
    with pytest.raises(KeyboardInterrupt): export_openvino(m, tmp_path/'t.xml', size=(32, 16))
    monkeypatch.setattr(os, 'replace', real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['t.bin', 't.xml']
    assert OpenVINOBackend(tmp_path/'t.xml').meta.input_size() == (32, 16)

def test_openvino_refused_without_the_package(tiny, monkeypatch):
    "Where openvino does not import, the format and the runtime are refused in one line that names the extra."
    from reid_nb.core import InputValueError
    from reid_nb.embed import Embedder
    from reid_nb.export import export_openvino
    from reid_nb.cli import export_model
    d, m, xml = tiny
    monkeypatch.setitem(sys.modules, 'openvino', None)
    for f in (lambda: export_openvino(m, d/'x.xml'), lambda: Embedder(xml), lambda: export_model(d/'tiny.pth', 'openvino', d/'y.xml')):
        with pytest.raises(InputValueError, match=r'OpenVINO is not installed: pip install "reid_nb\[openvino\]"'): f()
    assert not (d/'x.xml').exists() and not (d/'y.xml').exists()

# --- files the previous version wrote (tests/fixtures/landed, see its README) -------------------------------------------

LANDED = Path(__file__).resolve().parent/'fixtures'/'landed'

def test_landed_onnx_embeds_like_its_checkpoint():
    from reid_nb.embed import Embedder
    crops = sorted((LANDED/'crops').glob('*.jpg'))
    ox, pt = Embedder(LANDED/'tiny.onnx'), Embedder(LANDED/'tiny.pth')
    assert ox.size == pt.size == (48, 24)
    np.testing.assert_allclose(ox(crops), pt(crops), atol=1e-4)
    np.testing.assert_allclose(pt(crops), np.load(LANDED/'feats.npz')['feats'], atol=1e-4)       # as `reid-nb embed` gave then
