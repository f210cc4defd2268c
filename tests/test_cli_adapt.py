"""`reid-nb adapt` as a user meets it (issue 19 item 10, issue 22): on a tiny target with fewer pseudo identities than the
batch's P it trains on a fitted P x K or fails in one line, never writes a checkpoint when nothing trained, never writes
onto its input, refuses an existing output without --overwrite, and prints its table once, in percent."""
import types
import pytest, torch
from reid_nb.cli import main

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A random tiny source checkpoint at 32x16 and a CSV of 40 synthetic target images (5 identities, 2 cameras)."
    from reid_nb.data.synthetic import synthetic_reid
    from reid_nb.models import build_model, save_reid_model
    d = tmp_path_factory.mktemp('adapt')
    df = synthetic_reid(d/'target', n_ids=5, n_cams=2, imgs_per_id=8, size=(32, 16), seed=3, n_test_ids=0)
    df[['path', 'camid']].to_csv(d/'target.csv', index=False)
    torch.manual_seed(0)
    save_reid_model(d/'src.pth', build_model('test_resnet', num_classes=4, pretrained=False).eval(), size=(32, 16))
    return d

FAST = ('--rounds', 1, '--steps', 2, '--k1', 4, '--k2', 2, '--min-samples', 2)

@pytest.fixture
def adapt(capsys):
    "Run `reid-nb adapt --weights SRC --target CSV ARGS` in this process (the console script is `main`): returncode, stdout, stderr."
    def run(d, *args):
        rc = main(['adapt', '--weights', str(d/'src.pth'), '--target', str(d/'target.csv'), *map(str, args)])
        out = capsys.readouterr()
        return types.SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)
    return run

def one_line(p, *words):
    assert p.returncode == 2 and 'Traceback' not in p.stderr, (p.returncode, p.stderr[-2000:])
    err = [l for l in p.stderr.splitlines() if l.startswith('reid-nb: error:')]
    assert len(err) == 1 and all(w in err[0] for w in words), p.stderr

def test_few_clusters_train_on_fitted_pk(tiny, adapt):
    "7 pseudo identities < P = 16: the round trains on 7 x 4 batches (the batch options reach it), the model moves."
    from reid_nb.models import load_reid_model
    p = adapt(tiny, '-o', tiny/'a.pth', *FAST)
    assert p.returncode == 0, p.stderr[-2000:]
    assert 'fewer than P = 16: training on batches of' in p.stderr, p.stderr
    assert p.stdout.count('per-round table') == 1 and 'in %' in p.stdout, p.stdout
    src, out = load_reid_model(tiny/'src.pth'), load_reid_model(tiny/'a.pth')
    assert any(not torch.equal(a, b) for a, b in zip(src.state_dict().values(), out.state_dict().values()))
    p = adapt(tiny, '-o', tiny/'b.pth', *FAST, '--bs', 8, '--num-instances', 2)
    assert p.returncode == 0 and 'fewer than P' not in p.stderr, p.stderr[-2000:]
    import pandas as pd
    t = pd.read_csv(tiny/'b.csv')
    assert t.bs.iloc[1] == 8 and t.steps.iloc[1] >= 2, t

def test_no_identity_fails_and_writes_nothing(tiny, adapt):
    p = adapt(tiny, '-o', tiny/'none.pth', *FAST[:-1], 1000)
    one_line(p, 'found 0 identities', '--eps', '--min-samples')
    assert not (tiny/'none.pth').exists() and not (tiny/'none.csv').exists()

def test_never_onto_input_and_no_silent_overwrite(tiny, adapt):
    before = (tiny/'src.pth').read_bytes()
    one_line(adapt(tiny, '-o', tiny/'src.pth', *FAST), 'is the input --weights')
    assert (tiny/'src.pth').read_bytes() == before
    one_line(adapt(tiny, '-o', tiny/'src.pth', *FAST, '--overwrite'), 'is the input --weights')
    (tiny/'old.pth').write_bytes(b'keep me')
    one_line(adapt(tiny, '-o', tiny/'old.pth', *FAST), 'already exists', '--overwrite')
    assert (tiny/'old.pth').read_bytes() == b'keep me'
    p = adapt(tiny, '-o', tiny/'old.pth', *FAST, '--overwrite')
    assert p.returncode == 0 and (tiny/'old.pth').read_bytes() != b'keep me', p.stderr[-2000:]
