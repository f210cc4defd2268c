"End-to-end checks of reid_nb.data.loaders with worker processes: synthetic frame -> P×K epoch, bad files -> clear errors."
import shutil
import numpy as np
import pandas as pd
import pytest
import torch
from reid_nb.data.synthetic import synthetic_reid
from reid_nb.data.loaders import reid_dataloaders
from reid_nb.core import InputFileError

P, K = 4, 2

@pytest.fixture(scope='module')
def frame(tmp_path_factory):
    return synthetic_reid(tmp_path_factory.mktemp('synth'), n_ids=16, n_cams=3, imgs_per_id=6, size=(64, 32))

def _pk_ok(labels:list):
    "Plain check: P distinct labels, K items each."
    counts = {}
    for y in labels: counts[y] = counts.get(y, 0) + 1
    return len(counts) == P and sorted(counts.values()) == [K]*P

def test_epoch_with_workers(frame):
    dls = reid_dataloaders(frame, size=(64, 32), bs=P*K, num_instances=K, num_workers=2, test_bs=16)
    train = frame[frame.split == 'train']
    assert dls.n_classes == train.pid.nunique() == 8
    seen, n = set(), 0
    for xb, yb in dls.train:
        assert xb.shape == (P*K, 3, 64, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
        assert 0 <= xb.min() and xb.max() <= 1
        assert _pk_ok(yb.tolist())
        seen |= set(yb.tolist()); n += 1
    assert n == len(dls.train) > 0
    assert seen == set(range(dls.n_classes))  # every identity visited in the epoch
    # query then gallery, in frame order, with workers
    pids = torch.cat([b[1] for b in dls.valid]).tolist()
    assert pids == frame[frame.split == 'query'].pid.tolist() + frame[frame.split == 'gallery'].pid.tolist()

def test_workers_deterministic(frame):
    "Same seed -> same batches (order and augmentation) with 2 workers; the next epoch differs."
    mk = lambda: reid_dataloaders(frame, size=(64, 32), bs=P*K, num_instances=K, num_workers=2, seed=3)
    a, b = mk(), mk()
    ea, eb = list(a.train), list(b.train)
    assert len(ea) == len(eb) > 0
    for (xa, ya), (xb, yb) in zip(ea, eb):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    ea2 = list(a.train)
    assert any(not torch.equal(y1, y2) for (_, y1), (_, y2) in zip(ea, ea2))

def test_truncated_image_names_file(frame, tmp_path):
    df = frame.copy()
    # a truncated query image: the evaluation stream fails naming it
    q = df.index[df.split == 'query'][3]
    bad = tmp_path/'truncated_query.jpg'
    bad.write_bytes(open(df.path[q], 'rb').read()[:200])
    df.loc[q, 'path'] = str(bad)
    # a training identity whose images are all truncated: the first training epoch must hit it
    pid = df[df.split == 'train'].pid.iloc[0]
    for i in df.index[(df.split == 'train') & (df.pid == pid)]:
        p = tmp_path/f"truncated_train_{i}.jpg"; p.write_bytes(open(df.path[i], 'rb').read()[:200]); df.loc[i, 'path'] = str(p)
    dls = reid_dataloaders(df, size=(64, 32), bs=P*K, num_instances=K, num_workers=2)
    with pytest.raises(OSError, match='truncated_query.jpg'):
        for _ in dls.query: pass
    with pytest.raises(OSError, match=r'truncated_train_\d+\.jpg'):
        for _ in dls.train: pass

def test_missing_file_names_file(frame, tmp_path):
    df = frame.copy(); df.loc[df.index[df.split == 'gallery'][0], 'path'] = str(tmp_path/'nowhere.jpg')
    with pytest.raises(InputFileError, match=r'1 of \d+ image files do not exist, e.g. .*nowhere.jpg'):   # when the frame is checked, not at a batch
        reid_dataloaders(df, size=(64, 32), bs=P*K, num_instances=K, num_workers=2)

def test_learner_fit_with_workers(frame):
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from torch import nn
    dls = reid_dataloaders(frame, size=(64, 32), bs=P*K, num_instances=K, num_workers=2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, dls.n_classes))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat())
    with learn.no_logging(): learn.fit(1, 1e-2)
    assert len(learn.recorder.losses) == len(dls.train)
    assert np.isfinite([float(l) for l in learn.recorder.losses]).all()
