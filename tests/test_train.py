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
