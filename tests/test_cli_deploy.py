"""`reid-nb export | embed | index | search` on the contracts they share: formats from the `EXPORTERS` registry, the
same unreadable-image policy as training (relative folders included), the model's description in the files they write
and read (test size spelled `size_test`; files of the previous version read with their old `size`)."""
import json, shutil
from pathlib import Path
import numpy as np
import pytest, torch
from PIL import Image

from test_cli import reid_nb, _one_line_error   # the console-script runner and the one-line-error check, shared

LANDED = Path(__file__).resolve().parent/'fixtures'/'landed'

@pytest.fixture(scope='module')
def crops(tmp_path_factory):
    "A folder `crops/` of four random crops and a checkpoint of a tiny model (test size 64×32)."
    from reid_nb.models import build_model, save_reid_model
    d = tmp_path_factory.mktemp('cli_deploy')
    (d/'crops').mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (80, 40, 3), dtype=np.uint8)).save(d/'crops'/f'{i:04d}_c{i % 2 + 1}s1_000001_01.jpg')
    torch.manual_seed(0)
    save_reid_model(d/'m.pth', build_model('test_resnet', num_classes=4, pretrained=False).eval(), size=(64, 32))
    return d

def test_embed_relative_folder_skips_unreadable(crops, tmp_path, monkeypatch):
    "`reid-nb embed crops/` with a broken crops/bad.jpg: one warning naming it, the other crops embedded (it used to stop)."
    d = tmp_path
    shutil.copytree(crops/'crops', d/'crops'); shutil.copy(crops/'m.pth', d/'m.pth')
    (d/'crops'/'bad.jpg').write_bytes(b'not a jpeg')
    monkeypatch.chdir(d)                                    # so that `crops` is a relative folder
    p = reid_nb('embed', 'crops', '--weights', 'm.pth', '-o', 'f.npz', cache=d/'cache')
    assert p.returncode == 0, p.stderr[-2000:]
    warns = [l for l in p.stderr.splitlines() if l.startswith('reid-nb: warning:')]
    assert len(warns) == 1 and '1 of 5 images' in warns[0] and 'crops/bad.jpg' in warns[0], p.stderr
    f = np.load(d/'f.npz')
    assert f['feats'].shape == (4, 96) and list(f['paths']) == [f'crops/{i:04d}_c{i % 2 + 1}s1_000001_01.jpg' for i in range(4)]

def test_search_embeds_at_the_gallerys_test_size(crops, tmp_path):
    "Features made at --size 40 20 are searched at 40×20 (not the checkpoint's 64×32): an image finds itself at distance 0."
    from reid_nb.embed import Embedder
    q = sorted((crops/'crops').glob('*.jpg'))[2]
    assert Embedder(crops/'m.pth').compare(q, q) > 0.9999
    assert np.abs(Embedder(crops/'m.pth', size=(40, 20))(q) - Embedder(crops/'m.pth')(q)).max() > 1e-3   # the size matters
    for args in (('embed', crops/'crops', '--weights', crops/'m.pth', '--size', 40, 20, '-o', tmp_path/'f.npz'),
                 ('index', tmp_path/'f.npz', '-o', tmp_path/'g')):
        p = reid_nb(*args, cache=tmp_path/'cache'); assert p.returncode == 0, p.stderr[-2000:]
    meta = json.loads((tmp_path/'g'/'gallery.json').read_text())['meta']
    assert (meta['size_test'], meta['size']) == ([40, 20], [64, 32]), meta         # test size as embedded, training size kept
    p = reid_nb('search', q, '--gallery', tmp_path/'g', '-k', 2, cache=tmp_path/'cache')
    assert p.returncode == 0, p.stderr[-2000:]
    hit = p.stdout.splitlines()[1].split()
    assert hit[-1] == str(q) and float(hit[2]) < 1e-4, p.stdout

def test_landed_files_index_and_search(tmp_path, monkeypatch):
    "The previous version's feats.npz indexes (its `size` read as the test size) and its gallery/ searches."
    p = reid_nb('index', LANDED/'feats.npz', '-o', tmp_path/'g', cache=tmp_path/'cache')
    assert p.returncode == 0, p.stderr[-2000:]
    meta = json.loads((tmp_path/'g'/'gallery.json').read_text())['meta']
    assert meta['size_test'] == [48, 24] and 'size' not in meta and meta['flip'] is False, meta
    monkeypatch.chdir(LANDED)                               # the landed paths are relative to it; nothing is written there
    q = 'crops/0002_c1s1_000001_01.jpg'
    for gallery in ('gallery', tmp_path/'g'):
        p = reid_nb('search', q, '--gallery', gallery, '--weights', 'tiny.pth', '-k', 3, cache=tmp_path/'cache')
        assert p.returncode == 0, p.stderr[-2000:]
        lines = p.stdout.splitlines()
        assert lines[0] == f'query {q}' and lines[1].endswith(q) and float(lines[1].split()[2]) < 1e-4, p.stdout

def test_export_formats_from_the_registry(crops, tmp_path):
    "The format names are the registry's; an unknown one is one line listing them; the default output takes the format's suffix."
    from reid_nb.cli import export_model, CLIError
    from reid_nb.core import InputError
    from reid_nb.runtime import EXPORTERS
    assert EXPORTERS.names() == ['onnx', 'onnx-int8', 'openvino', 'tensorrt']
    with pytest.raises(InputError, match="unknown export format 'h5'; known: onnx, onnx-int8, openvino, tensorrt"): export_model(crops/'m.pth', 'h5')
    shutil.copy(crops/'m.pth', tmp_path/'m.pth')
    assert export_model(tmp_path/'m.pth', 'openvino') == tmp_path/'m.xml'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.bin', 'm.pth', 'm.xml']
    with pytest.raises(CLIError, match='is the input --weights'): export_model(tmp_path/'m.pth', 'onnx', tmp_path/'m.pth')

def test_gallery_paths_resolve_from_anywhere(crops, tmp_path, monkeypatch):
    "A gallery embedded and indexed with relative paths, searched from another folder: the paths printed exist (issue 19, item 14)."
    from reid_nb.cli import embed_images, build_gallery
    shutil.copytree(crops/'crops', tmp_path/'site'/'crops'); shutil.copy(crops/'m.pth', tmp_path/'site'/'m.pth')
    monkeypatch.setenv('REID_NB_CACHE', str(tmp_path/'cache'))
    monkeypatch.chdir(tmp_path/'site')
    embed_images('crops', 'm.pth', 'f.npz'); build_gallery('f.npz', 'gal')     # relative paths, in the site's folder
    monkeypatch.chdir(tmp_path)
    q = str(sorted((tmp_path/'site'/'crops').glob('*.jpg'))[0])
    p = reid_nb('search', q, '--gallery', 'site/gal', '-k', 99, '--plot', tmp_path/'r.png', cache=tmp_path/'cache')
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert lines[0] == 'note: -k 99 but site/gal holds 4 images: showing all 4', lines     # clamped, said once
    rows = [l for l in lines[2:] if l.startswith('  ')]
    assert len(rows) == 4 and all(Path(r.split()[-1]).is_file() for r in rows), p.stdout   # no dead paths
    assert all(r.split()[3] == '(cosine)' for r in rows), rows                             # the distance is named
    w, h = Image.open(tmp_path/'r.png').size
    assert h >= 128, (w, h)                                                 # 64×32 crops drawn at a readable size

def test_cli_starts_without_torch():
    "`reid-nb --help`, each command's help and parsing import neither torch nor numpy (they take seconds): issue 19, item 20."
    import subprocess, sys
    code = ("import sys; from reid_nb.cli import build_parser; p = build_parser(); p.format_help(); "
            "[sp.format_help() for sp in p._subparsers._group_actions[0].choices.values()]; "
            "p.parse_args(['export', '--weights', 'w.pth', '--format', 'onnx']); "
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'fastai', 'timm', 'faiss') if m in sys.modules))")
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == '[]', (p.stdout, p.stderr[-2000:])
