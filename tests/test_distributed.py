"""Two processes on CPU (gloo), launched the way torchrun launches them (RANK / WORLD_SIZE / MASTER_* in the environment):
each rank trains on its own whole P×K batches, the ranks end with identical parameters equal to a one-process run over
the same global batches, a run interrupted after epoch 1 and resumed under DDP included, rank 0 alone writes, and the
distributed evaluation gives every rank the single-process result."""
import inspect, os, socket, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch
from fastcore.test import test_close as close, test_eq as eq  # aliased: pytest would collect test_*

ARCH, SIZE, WORLD, PK, K, EPOCHS = 'timm:test_resnet', (32, 16), 2, 8, 4, 2
NOAUG = dict(flip_prob=0., padding=0, rea_prob=0.)   # the reference sees exactly the images the ranks saw

def _dls(df, **kw):
    from reid_nb.learner import recipe_dataloaders
    return recipe_dataloaders(df, 'bagtricks', size=SIZE, bs=PK, num_instances=K, test_bs=32, seed=0, **NOAUG, **kw)

def _learner(dls):
    from reid_nb.learner import reid_learner
    return reid_learner(dls, ARCH, pretrained=False, base_lr=1e-3, epochs=EPOCHS, sched='constant', warmup_iters=0)

def _worker(out:Path, rank:int):
    "One rank: train 1 epoch, stop, resume for the 2nd from rank 0's last.pth; save what it saw, its weights and its evaluation."
    torch.set_num_threads(1)
    import pandas as pd
    from fastai.callback.core import Callback, CancelFitException
    from reid_nb.core import seed_everything
    from reid_nb.data.samplers import IdentitySampler
    from reid_nb.distributed import barrier
    df = pd.read_pickle(out/'frame.pkl')
    seed_everything(0)
    dls = _dls(df)
    smp, seen = dls.train.sampler, []
    class Recording(IdentitySampler):
        def __iter__(self):
            idx = list(super().__iter__()); seen.append(idx); yield from idx
    smp.__class__ = Recording
    class StopAfter1(Callback):
        order = 95
        def after_epoch(self): raise CancelFitException()
    a = _learner(dls)
    with a.no_bar(): a.fit_reid(save_dir=out/f'ck{rank}', cbs=[StopAfter1()], evaluate=False)
    barrier()           # rank 0 has written last.pth
    b = _learner(dls)   # a fresh learner, as after a restart: everything comes from rank 0's last.pth
    with b.no_bar(): res = b.fit_reid(resume=out/'ck0'/'last.pth', save_dir=out/f'ck{rank}')
    torch.save({'seen': seen, 'model': b.model.state_dict(), 'all_AP': res.all_AP, 'cmc': res.cmc, 'mAP': res.mAP,
                'topk': res.topk_idx, 'world': (smp.rank, smp.world_size)}, out/f'rank{rank}.pt')

@pytest.fixture(scope='module')
def run(tmp_path_factory):
    from reid_nb.data.synthetic import synthetic_reid
    out = tmp_path_factory.mktemp('ddp')
    synthetic_reid(out/'data', n_ids=16, imgs_per_id=6, size=SIZE, seed=0, n_test_ids=6).to_pickle(out/'frame.pkl')
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    env = {**os.environ, 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port), 'WORLD_SIZE': str(WORLD), 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get('PYTHONPATH', '')])}
    t = time.time()
    ps = [subprocess.Popen([sys.executable, __file__, str(out), str(r)], env={**env, 'RANK': str(r), 'LOCAL_RANK': str(r)},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(WORLD)]
    logs = [p.communicate(timeout=300)[0] for p in ps]
    for p, log in zip(ps, logs): assert p.returncode == 0, log[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # the references below use tiny tensors: more threads only wait on each other
    try: yield out, [torch.load(out/f'rank{r}.pt', weights_only=False) for r in range(WORLD)], logs, time.time() - t
    finally: torch.set_num_threads(threads)

def test_ranks_see_disjoint_pk_batches_covering_the_epoch(run):
    out, ranks, logs, _ = run
    import pandas as pd
    from reid_nb.data.samplers import IdentitySampler
    eq([r['world'] for r in ranks], [(0, WORLD), (1, WORLD)])
    dls = _dls(pd.read_pickle(out/'frame.pkl'))
    labels = dls.train.dataset.labels
    ref = IdentitySampler(labels, PK, K, seed=0, rank=0, world_size=WORLD)
    for e in range(EPOCHS):
        got = [np.array(r['seen'][e]).reshape(-1, PK) for r in ranks]
        every = ref.epoch_batches(e)
        eq(sum(len(g) for g in got), len(every))
        # rank r trained on batches r, r+W, ...: disjoint, and together the whole epoch
        for r, g in enumerate(got): eq(g, every[r::WORLD])
        for g in got:   # whole P×K batches: P identities, K images each
            for b in g: eq(sorted(np.unique(labels[b], return_counts=True)[1].tolist()), [K] * (PK // K))

def test_parameters_identical_and_equal_to_one_process(run):
    out, ranks, logs, _ = run
    import pandas as pd
    from reid_nb.core import seed_everything
    from reid_nb.learner import param_groups
    a, b = ranks[0]['model'], ranks[1]['model']
    for k in a: eq(a[k], b[k])     # bit-identical across ranks
    # one process, the same initial weights, each global step = the W rank batches, gradient averaged over them
    df = pd.read_pickle(out/'frame.pkl')
    seed_everything(0)
    dls = _dls(df)
    learn = _learner(dls)
    model, loss_func, ds = learn.model, learn.loss_func, dls.train.dataset
    opt = torch.optim.Adam(param_groups(model, **learn.recipe['solver']))
    model.train()
    targets = 'targets' in inspect.signature(model.forward).parameters   # margin classifiers take the labels
    from reid_nb.data.samplers import IdentitySampler
    every = IdentitySampler(ds.labels, PK, K, seed=0, rank=0, world_size=WORLD)
    for e in range(EPOCHS):
        batches = every.epoch_batches(e)
        for i in range(0, len(batches), WORLD):
            opt.zero_grad()
            for b in batches[i:i+WORLD]:
                x = torch.stack([ds[j][0] for j in b]); y = torch.as_tensor(ds.labels[b])
                (loss_func(model(x, y) if targets else model(x), y) / WORLD).backward()
            opt.step()
    ref = model.state_dict()
    for k, v in a.items():
        if v.is_floating_point() and 'running' not in k: close(v, ref[k], eps=1e-4)

def test_rank0_writes_and_evaluation_matches_one_process(run):
    out, ranks, logs, secs = run
    import pandas as pd
    from reid_nb.evaluate import reid_eval
    from reid_nb.models import load_reid_model
    assert (out/'ck0'/'last.pth').is_file() and not (out/'ck1').exists()
    for k in ('all_AP', 'cmc', 'topk'): eq(ranks[0][k], ranks[1][k])
    model = load_reid_model(out/'ck0'/'last.pth').eval()
    dls = _dls(pd.read_pickle(out/'frame.pkl'))
    ref = reid_eval(model, dls.query, dls.gallery)
    close(ranks[0]['all_AP'], ref.all_AP, eps=1e-5); close(ranks[0]['cmc'], ref.cmc, eps=1e-6); close(ranks[0]['mAP'], ref.mAP, eps=1e-6)
    eq(ranks[0]['topk'], ref.topk_idx)
    assert 'mAP' in logs[0] and 'mAP' not in logs[1], logs[1][-500:]   # rank 0 prints the epoch table
    print(f"2-process gloo run: {secs:.1f} s")

if __name__ == '__main__':
    _worker(Path(sys.argv[1]), int(sys.argv[2]))
