"End-to-end training on synthetic identities (CPU, tiny model): the loss decreases, resume is exact."
import numpy as np, pytest, torch
from fastcore.test import test_close as close, test_eq as eq  # aliased: pytest would collect test_*
from reid_nb.core import seed_everything, load_checkpoint
from reid_nb.data.synthetic import synthetic_reid
from reid_nb.learner import recipe_dataloaders, reid_learner

ARCH, SIZE = 'timm:test_resnet', (64, 32)

@pytest.fixture(scope='module')
def frame(tmp_path_factory):
    return synthetic_reid(tmp_path_factory.mktemp('synth'), n_ids=32, imgs_per_id=8, size=SIZE, seed=0)

def _learner(df, seed=0, **kw):
    seed_everything(seed)
    dls = recipe_dataloaders(df, 'bagtricks', size=SIZE, bs=16, num_instances=4, test_bs=64, seed=0)
    return reid_learner(dls, ARCH, pretrained=False, **{'base_lr': 1e-3, 'epochs': 2, 'sched': 'constant', **kw})

def test_two_epoch_fit_loss_decreases(frame):
    learn = _learner(frame)
    with learn.no_bar(), learn.no_logging(): res = learn.fit_reid()
    n = len(learn.dls.train)
    total = np.sum([learn.recorder.terms[k] for k in ('ce', 'triplet')], axis=0)
    eq(len(total), 2 * n)
    assert total[n:].mean() < total[:n].mean(), (total[:n].mean(), total[n:].mean())
    assert 0 <= res.mAP <= 1 and 0 <= float(res.cmc[0]) <= 1
    # fastai's table: loss terms and re-id metrics of the last epoch
    names = list(learn.recorder.metric_names)
    for k in ('ce', 'triplet', 'rank1', 'mAP', 'mINP'): assert k in names
    close(learn.recorder.values[-1][names.index('mAP') - 1], res.mAP * 100, eps=1e-4)   # percent, as the results table
    # a second fit shows each column once, and the callbacks leave `learn.metrics` as they found it
    with learn.no_bar(), learn.no_logging(): learn.fit_reid(1)
    eq(list(learn.recorder.metric_names), names)
    eq(len(learn.metrics), 0)
    # callbacks find each other by name (learn.reid_eval, learn.checkpoint), not through attributes left on the learner
    eq([k for k in vars(learn) if k.startswith('reid_')], [])

def test_resume_matches_uninterrupted(frame, tmp_path):
    "2 epochs in one go == 1 epoch, checkpoint, a fresh learner (other seed) resumed for the 2nd epoch."
    a = _learner(frame, sched='multistep', steps=[60], warmup_iters=1000)  # scaled: lr drops after epoch 1, warm-up spans it
    with a.no_bar(), a.no_logging(): a.fit_reid(2, save_dir=tmp_path/'a', evaluate=False)
    b = _learner(frame, sched='multistep', steps=[60], warmup_iters=1000)
    with b.no_bar(), b.no_logging(): b.fit_reid(2, save_dir=tmp_path/'b', evaluate=False, cbs=[_StopAfter(1)])
    eq(load_checkpoint(tmp_path/'b'/'last.pth')['epoch'], 1)
    c = _learner(frame, seed=7, sched='multistep', steps=[60], warmup_iters=1000)
    with c.no_bar(), c.no_logging(): c.fit_reid(2, resume=tmp_path/'b'/'last.pth', save_dir=tmp_path/'c', evaluate=False)
    for (k, v), w in zip(a.model.state_dict().items(), c.model.state_dict().values()):
        if v.is_floating_point(): close(v, w, eps=1e-5)
        else: eq(v, w)
    close(a.recorder.lrs[-len(c.recorder.lrs):], c.recorder.lrs)

from fastai.callback.core import Callback, CancelFitException
class _StopAfter(Callback):
    "Interrupt a run after `n` epochs (after the checkpoint is written)."
    order = 95
    def __init__(self, n): self.n = n
    def after_epoch(self):
        if self.epoch + 1 >= self.n: raise CancelFitException()

_PKG = __import__('pathlib').Path(__file__).resolve().parents[1]/'reid_nb'
_FASTAI_USERS = sorted('.'.join(p.relative_to(_PKG.parent).with_suffix('').parts) for p in _PKG.rglob('*.py')
                       if 'from fastai' in p.read_text() or 'import fastai' in p.read_text())

@pytest.mark.parametrize('module', _FASTAI_USERS + ['reid_nb.cli'])
def test_import_is_quiet(module):
    "Importing any module that imports fastai, first in a process, warns about nothing: no FutureWarning from torch.jit.script."
    import subprocess, sys
    from pathlib import Path
    env = {**__import__('os').environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1])}
    p = subprocess.run([sys.executable, '-W', 'error::FutureWarning', '-c', f'import {module}'], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]

# ---- `reid-nb train`: nothing lost, nothing ignored (issue 19) -------------------------------------------------------------
import contextlib, io, os, signal, subprocess, sys, time, warnings
from pathlib import Path
import yaml
from reid_nb.cli import train as cli_train, CLIError
from reid_nb.core import InputError

_ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def run_data(tmp_path_factory):
    "Synthetic identities where the 'synthetic' data set reads them: 8 training identities × 16 crops = 8 batches of 16."
    d = tmp_path_factory.mktemp('runs')
    synthetic_reid(d/'data', n_ids=16, imgs_per_id=16, size=SIZE, seed=0)
    return d

def _cfg(d:Path, out='out', **solver):
    "A tiny BoT config (OSNet x0.25 at 64×32, CPU) writing into d/out; a last.pth after every batch (CHECKPOINT_MINUTES 0)."
    cfg = {'_BASE_': str(_ROOT/'configs'/'Base-bagtricks.yml'),
           'MODEL': {'DEVICE': 'cpu', 'BACKBONE': {'NAME': 'build_osnet_backbone', 'DEPTH': 'x0_25', 'FEAT_DIM': 128, 'PRETRAIN': False}},
           'INPUT': {'SIZE_TRAIN': list(SIZE), 'SIZE_TEST': list(SIZE)}, 'DATASETS': {'NAMES': ['synthetic'], 'TESTS': ['synthetic']},
           'DATALOADER': {'NUM_WORKERS': 0},
           'SOLVER': {'IMS_PER_BATCH': 16, 'AMP': {'ENABLED': False}, 'BASE_LR': 0.001, 'CHECKPOINT_MINUTES': 0.0, **solver},
           'TEST': {'IMS_PER_BATCH': 128, 'EVAL_PERIOD': 100}, 'OUTPUT_DIR': str(d/out)}
    f = d/f'{out}.yml'; f.write_text(yaml.safe_dump(cfg)); return f

def _train(d, f, *opts, **kw):
    "`reid-nb train` in this process (one thread, output captured): returns stdout."
    torch.set_num_threads(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter('ignore'); cli_train(str(f), list(opts), root=str(d/'data'), **kw)
    return out.getvalue()

def _model(path)->dict: return {k: v for k, v in load_checkpoint(path)['model'].items() if v.is_floating_point()}

def _same_weights(a:Path, b:Path):
    wa, wb = _model(a), _model(b)
    eq(sorted(wa), sorted(wb))
    for k in wa: close(wa[k], wb[k], eps=1e-5)

def _start(d, f, *args):
    "`reid-nb train` in a subprocess (one thread), output piped, as a user's run in the background."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(_ROOT), 'REID_NB_CACHE': str(d/'cache')}
    return subprocess.Popen([sys.executable, '-c', 'import sys; from reid_nb.cli import main; sys.exit(main())', 'train', '--config-file', str(f),
                             '--root', str(d/'data'), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

def _wait_mid_epoch(p, last:Path, timeout=240):
    "Wait until the run has written a mid-epoch state (a batch of epoch 0 done)."
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert p.poll() is None, p.communicate()
        if last.is_file():
            with contextlib.suppress(Exception):
                st = load_checkpoint(last)
                if st['batch'] > 0: return st
        time.sleep(0.05)
    raise AssertionError('no mid-epoch checkpoint')

@pytest.fixture(scope='module')
def reference(run_data):
    "An uninterrupted 2-epoch run: the weights every interrupted and resumed run must end with."
    _train(run_data, _cfg(run_data, 'ref'), epochs=2)
    return run_data/'ref'/'checkpoints'/'last.pth'

def test_kill9_mid_epoch_then_resume(run_data, reference):
    "kill -9 after the first mid-epoch save: --resume continues from that batch and ends where the uninterrupted run ends."
    f = _cfg(run_data, 'k9'); last = run_data/'k9'/'checkpoints'/'last.pth'
    p = _start(run_data, f, '--epochs', 2)
    st = _wait_mid_epoch(p, last)
    p.kill(); p.wait()
    assert st['epoch'] == 0 and 0 < st['batch'] < 8, (st['epoch'], st['batch'])
    out = _train(run_data, f, epochs=2, resume=True)
    assert 'resuming from' in out and 'continuing at' in out, out
    _same_weights(reference, last)

@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_one_line_and_exit_code(run_data, reference, sig):
    "SIGINT / SIGTERM: the batch ends, the state is written, one line, exit 130 / 143, no traceback; --resume ends as the uninterrupted run."
    name = signal.Signals(sig).name.lower()
    f = _cfg(run_data, name); last = run_data/name/'checkpoints'/'last.pth'
    p = _start(run_data, f, '--epochs', 2)
    _wait_mid_epoch(p, last)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=240)
    eq(p.returncode, 128 + sig)
    assert 'Traceback' not in stderr, stderr[-2000:]
    lines = [l for l in stderr.splitlines() if l.strip() and not l.startswith('reid-nb: warning:')]
    eq(len(lines), 1)
    st = load_checkpoint(last)
    eq(lines[0], f"interrupted at epoch {st['epoch']}, iteration {st['batch']}: --resume continues")
    if sig == signal.SIGINT:   # SIGTERM takes the same path: one resume suffices
        _train(run_data, f, epochs=2, resume=True)
        _same_weights(reference, last)

def _leaves(d:dict, p:str=''):
    for k, v in d.items():
        if isinstance(v, dict): yield from _leaves(v, f'{p}{k}.')
        else: yield f'{p}{k}', v

def _other(v):
    "A value of the same type as `v` that differs from it."
    if isinstance(v, bool): return not v
    if isinstance(v, int): return v + 1
    if isinstance(v, float): return v * 0.5 + 0.01
    if isinstance(v, str): return v + 'x'
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) and v: return [x + 1 for x in v]
    return list(v) + ['x']

def _built(cfg):
    "What a config builds: the recipe (model, loss, solver, data, test, run) and, for a Distiller, its teachers."
    from reid_nb.config import cfg_get, check_config
    from reid_nb.fastreid import recipe_from_config, kd_from_config
    check_config(cfg)
    return recipe_from_config(cfg), kd_from_config(cfg) if cfg_get(cfg, 'MODEL.META_ARCHITECTURE') == 'Distiller' else None

ALWAYS_ON = {'TEST.ROC.ENABLED': 'every evaluation computes the ROC (ReIDResult.roc, the TPR@FPR columns of every table)'}

def test_every_config_key_is_honoured_or_refused():
    "Walk FastReID's whole default tree: each key set away from its default changes what is built, or is refused in one line naming it."
    from reid_nb.config import get_default_config, cfg_set, switches_of
    default = _built(get_default_config())
    keys = list(_leaves(get_default_config()))
    assert len(keys) >= 130, len(keys)
    ignored = []
    for key, v in keys:
        if key in ALWAYS_ON: continue
        base = get_default_config()
        for switch, on, _ in switches_of(key): cfg_set(base, switch, on)   # the key's switches on, in the reference too
        var = yaml.safe_load(yaml.safe_dump(base)); cfg_set(var, key, _other(v))
        try: got = _built(var)
        except InputError as e:
            msg = str(e)
            assert key in msg and '\n' not in msg, (key, msg); continue
        try: ref = _built(base)
        except InputError: ref = default          # its switches alone are refused: compare with the defaults
        if got == ref: ignored.append(key)
    eq(ignored, [])

def test_overwrite_keeps_the_old_run_until_the_new_one_checkpoints(run_data):
    "--overwrite with a run that fails at iteration 1: the old run is still there, byte for byte; a good run then replaces it."
    f = _cfg(run_data, 'ow', CHECKPOINT_MINUTES=5.0); out = run_data/'ow'
    _train(run_data, f, epochs=1)
    files = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
    assert out/'checkpoints'/'last.pth' in files and out/'log.csv' in files
    with pytest.raises(InputError, match='training stopped'):   # Adam at lr 1e30: the loss of iteration 1 is not finite
        _train(run_data, f, 'SOLVER.BASE_LR', '1e30', epochs=1, overwrite=True)
    eq({p: p.read_bytes() for p in out.rglob('*') if p.is_file()}, files)
    _train(run_data, f, 'SEED', '1', epochs=1, overwrite=True)
    assert not (out/'.replaced').exists()
    assert (out/'checkpoints'/'last.pth').read_bytes() != files[out/'checkpoints'/'last.pth']
    eq(yaml.safe_load((out/'config.yaml').read_text())['SEED'], 1)

def test_model_weights_initialise_the_model(run_data, reference):
    "MODEL.WEIGHTS: the run starts from the checkpoint (at lr 0 it ends there) and says what loaded; without it the loss differs."
    from reid_nb.core import save_checkpoint
    st = load_checkpoint(reference)   # a source trained on 5 identities, as when fine-tuning on new ones: its classifier cannot fit
    cls = next(k for k, v in st['model'].items() if v.ndim == 2 and v.shape[0] == 8)
    st['model'][cls] = st['model'][cls][:5]
    src = save_checkpoint(run_data/'five_ids.pth', st)
    f = _cfg(run_data, 'w', WARMUP_ITERS=0)
    out = _train(run_data, f, 'MODEL.WEIGHTS', str(src), 'SOLVER.BASE_LR', '0', epochs=1)
    n = len(st['model'])
    assert f"MODEL.WEIGHTS: loaded {n - 1}/{n} tensors from {src}; skipped: {cls} (shape)" in out, out
    params = lambda p: {k: v for k, v in _model(p).items() if 'running_' not in k and k != cls}   # BN statistics move in training mode
    got, want = params(run_data/'w'/'checkpoints'/'last.pth'), params(reference)
    for k in want: eq(got[k], want[k])
    _train(run_data, _cfg(run_data, 'w0', WARMUP_ITERS=0), 'SOLVER.BASE_LR', '0', epochs=1)
    import pandas as pd
    lw, l0 = (pd.read_csv(run_data/o/'log.csv').train_loss.iloc[0] for o in ('w', 'w0'))
    assert lw < l0 - 0.1, (lw, l0)   # the trained weights' loss, not a random model's

def test_device_and_config_file_refusals(run_data, tmp_path):
    "MODEL.DEVICE cuda without CUDA, and config files that are empty, key-less, binary or folders: one line each, exit 2."
    from reid_nb.cli import main
    def one_line(*argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err): rc = main(list(map(str, argv)))
        lines = [l for l in err.getvalue().splitlines() if not l.startswith('reid-nb: warning:')]
        eq(rc, 2); eq(len(lines), 1)
        return lines[0]
    if not torch.cuda.is_available():
        msg = one_line('train', '--config-file', _cfg(run_data, 'dev'), 'MODEL.DEVICE', 'cuda')
        assert "MODEL.DEVICE = 'cuda' but this machine has no CUDA device" in msg, msg
        assert not (run_data/'dev').exists()
    (tmp_path/'empty.yml').write_text('')
    (tmp_path/'comments.yml').write_text('# nothing here\n')
    (tmp_path/'model.yml').write_bytes(torch.zeros(64).numpy().tobytes() + b'\xff\xfe')
    assert 'empty.yml is empty' in one_line('train', '--config-file', tmp_path/'empty.yml')
    assert 'comments.yml is empty' in one_line('train', '--config-file', tmp_path/'comments.yml')
    assert f'{tmp_path/"model.yml"} is not a text YAML file' in one_line('train', '--config-file', tmp_path/'model.yml')
    assert f'{tmp_path} is a folder, expected a YAML file' in one_line('train', '--config-file', tmp_path)
