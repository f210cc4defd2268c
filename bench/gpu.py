"""The GPU path measured: training throughput, evaluation and re-ranking time on one device.

    python bench/gpu.py                              # CUDA: BoT-R50 and SBS-R50-ibn, batch 64 at 256x128 / 384x128
    python bench/gpu.py --device cpu --toy           # a quick run on any machine: it proves every row runs
    python bench/gpu.py --fastreid-config PATH.yml   # adds FastReID's own model built from its config (see below)

Training rows: images/s of a full training step (forward, ReIDLoss of the recipe, backward, Adam step) of a model
built as the recipe builds it (random weights), on synthetic P x K batches (P = batch / K identities) that stay on
the device, so the data pipeline is not measured. Modes: fp32; AMP (CUDA: fp16 autocast + GradScaler, as the
recipes' AMP=True; CPU: bf16 autocast); AMP + channels_last; AMP + channels_last + torch.compile of the backbone
(as `CompileModel`; the first `--warmup` + 2 steps, which include compilation, are not timed).

Evaluation rows: `reid_nb.evaluate.evaluate(q, g)` on synthetic L2-normalised 2048-d features on the device
(Market-1501: 3,368 x 15,913; MSMT17: 11,659 x 82,161): CMC, mAP, mINP, ROC / TPR@FPR, histograms, top-10 lists.
Re-ranking row: `reid_nb.rerank.rerank_features` at Market size (k1=20, k2=6, lambda=0.3), the exact
k-reciprocal re-ranking of Zhong et al. 2017 (it matches FastReID's and torchreid's `re_ranking`, see
tests/test_rerank_reference.py), not an approximation; the GNN re-ranking paper's 9.4 ms on a K40m is for an
approximate method.

FastReID comparison (labelled rows, only with --fastreid-config): with FastReID 1.4 importable
(`pip install --no-deps fastreid==1.4.0`), its `build_model(cfg)` from the given config (e.g. FastReID's own
configs/Market1501/sbs_R50-ibn.yml from a FastReID checkout) trains on the same synthetic batches in the same loop
(fp32 and AMP). For FastReID's full trainer instead, run in a FastReID checkout on the same GPU:
`python tools/train_net.py --config-file configs/Market1501/sbs_R50-ibn.yml SOLVER.IMS_PER_BATCH 64` and read the
`time:` per iteration of its log (FastReID publishes SBS ~0.21 s/iter on 2x2080 Ti).

Besides the table, the figures go to bench/results/gpu.json, after the provenance block of bench/_common.py.
"""
import argparse, os, sys, time
import torch
from _common import RESULTS, SHAPES, synthetic_features, provenance, save_json

CASES = {'Market-1501': SHAPES['market'], 'MSMT17': SHAPES['msmt17']}
ARCHS = {'BoT-R50': ('bagtricks', {}), 'SBS-R50-ibn': ('sbs', dict(with_ibn=True))}

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def timed(fn, dev, warmup:int, iters:int)->float:
    "Seconds per call of `fn`, after `warmup` untimed calls."
    for _ in range(warmup): fn()
    sync(dev); t = time.perf_counter()
    for _ in range(iters): fn()
    sync(dev)
    return (time.perf_counter() - t) / iters

def train_step_fn(model, loss_func, opt, x, y, dev, amp:bool, targets:bool, fastreid:bool=False):
    "One training step as a closure: autocast (fp16 + GradScaler on CUDA, bf16 on CPU) when `amp`."
    dt = torch.float16 if dev.type == 'cuda' else torch.bfloat16
    scaler = torch.amp.GradScaler(dev.type, enabled=amp and dt == torch.float16)
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dt, enabled=amp):
            if fastreid: loss = sum(model({'images': x, 'targets': y}).values())
            else: loss = loss_func(model(x, y) if targets else model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt); scaler.update()
    return step

def bench_train(name, a, dev, modes):
    import inspect
    from reid_nb.learner import get_recipe, param_groups
    from reid_nb.losses import ReIDLoss
    from reid_nb.models import build_model
    recipe_name, extra = ARCHS[name]
    r = get_recipe(recipe_name)
    H, W = (64, 32) if a.toy else r['data']['size']
    K = min(r['data']['num_instances'], a.batch // 2)
    P = a.batch // K
    rows = []
    for mode in modes:
        torch.manual_seed(0)
        model = build_model('resnet50', num_classes=a.classes, pretrained=False, **{**r['model'], **extra}).to(dev).train()
        loss_func = ReIDLoss(r['loss'])
        opt = torch.optim.Adam(param_groups(model, **r['solver']))
        x = torch.rand(P * K, 3, H, W, device=dev)
        y = torch.arange(P, device=dev).repeat_interleave(K) % a.classes
        if 'channels_last' in mode: model = model.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
        if 'compile' in mode: model.backbone.compile()   # as reid_nb.callbacks.CompileModel: the backbone, where the time goes
        step = train_step_fn(model, loss_func, opt, x, y, dev, amp='AMP' in mode, targets='targets' in inspect.signature(model.forward).parameters)
        try: s = timed(step, dev, a.warmup + (2 if 'compile' in mode else 0), a.iters)
        except Exception as e:
            rows.append(dict(kind='train', model=name, mode=mode, error=f"{type(e).__name__}: {' '.join(str(e).split())[:120]}")); continue
        rows.append(dict(kind='train', model=name, mode=mode, batch=P * K, size=[H, W], s_per_iter=s, images_per_s=P * K / s))
        print(f"train {name:12s} {mode:28s} {P * K / s:8.1f} img/s", file=sys.stderr, flush=True)
        del model, opt, x
        if dev.type == 'cuda': torch.cuda.empty_cache()
    return rows

def bench_fastreid(cfg_file, a, dev):
    "FastReID's own model from its config, in the same loop (fp32 and AMP)."
    import warnings
    from reid_nb.test_utils import fastreid_compat
    warnings.simplefilter('ignore')
    with fastreid_compat():   # FastReID 1.4 predates Python 3.10
        from fastreid.config import get_cfg
        from fastreid.modeling import build_model as fr_build
        from fastreid.utils.events import EventStorage   # its training forward logs there
    cfg = get_cfg(); cfg.merge_from_file(cfg_file)
    cfg.MODEL.BACKBONE.PRETRAIN = False; cfg.MODEL.HEADS.NUM_CLASSES = a.classes; cfg.MODEL.DEVICE = str(dev)
    H, W = (64, 32) if a.toy else cfg.INPUT.SIZE_TRAIN
    K = min(cfg.DATALOADER.NUM_INSTANCE, a.batch // 2); P = a.batch // K
    rows = []
    for mode in ('fp32', 'AMP'):
        torch.manual_seed(0)
        model = fr_build(cfg).to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.SOLVER.BASE_LR)
        x = torch.rand(P * K, 3, H, W, device=dev) * 255  # FastReID normalises 0..255 pixels itself
        y = torch.arange(P, device=dev).repeat_interleave(K) % a.classes
        with EventStorage(0):
            s = timed(train_step_fn(model, None, opt, x, y, dev, amp=mode == 'AMP', targets=False, fastreid=True), dev, a.warmup, a.iters)
        rows.append(dict(kind='train', model=f"FastReID {os.path.basename(cfg_file)}", mode=mode, batch=P * K, size=[H, W],
                         s_per_iter=s, images_per_s=P * K / s))
    return rows

def bench_eval(a, dev):
    from reid_nb.evaluate import Features, evaluate
    from reid_nb.rerank import rerank_features
    rows = []
    scale = 10 if a.toy else 1
    for case, c in CASES.items():
        if case not in a.eval_cases: continue
        q, g = (Features(*x) for x in synthetic_features(c['nq'] // scale, c['ng'] // scale, max(c['ids'] // scale, 10), c['cams'], device=dev))
        res = {}
        def run(): res['r'] = evaluate(q, g, verbose=False)
        s = timed(run, dev, 1, a.eval_iters)
        rows.append(dict(kind='eval', case=case, nq=len(q), ng=len(g), seconds=s, mAP=res['r'].mAP))
        print(f"eval {case}: {s:.2f} s", file=sys.stderr, flush=True)
        if case == 'Market-1501' and not a.no_rerank:
            s = timed(lambda: rerank_features(q.feats, g.feats, k1=20, k2=6, lambda_value=0.3), dev, 1, a.eval_iters)
            rows.append(dict(kind='rerank', case=case, nq=len(q), ng=len(g), seconds=s))
            print(f"rerank {case}: {s:.2f} s", file=sys.stderr, flush=True)
        del q, g
    return rows

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--toy', action='store_true', help='tiny sizes (batch 8 at 64x32, evaluation and re-ranking sets / 10): proves it runs')
    ap.add_argument('--batch', type=int, default=None, help='P x K images per step (default 64; 8 with --toy)')
    ap.add_argument('--iters', type=int, default=None, help='timed training steps per row (default 20; 2 with --toy)')
    ap.add_argument('--warmup', type=int, default=None, help='untimed steps first (default 5; 1 with --toy)')
    ap.add_argument('--eval-iters', type=int, default=1, help='timed evaluations per row (after one untimed)')
    ap.add_argument('--models', nargs='+', default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument('--modes', nargs='+', default=['fp32', 'AMP', 'AMP+channels_last', 'AMP+channels_last+compile'])
    ap.add_argument('--eval-cases', nargs='*', default=list(CASES), help='evaluation sizes to time (none: skip)')
    ap.add_argument('--no-rerank', action='store_true')
    ap.add_argument('--classes', type=int, default=751, help='classifier size (Market-1501: 751)')
    ap.add_argument('--fastreid-config', default=None, help="FastReID config for labelled FastReID rows (needs fastreid importable)")
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    ap.add_argument('--out', default=str(RESULTS/'gpu.json'))
    a = ap.parse_args()
    a.batch = a.batch or (8 if a.toy else 64); a.iters = a.iters or (2 if a.toy else 20); a.warmup = a.warmup if a.warmup is not None else (1 if a.toy else 5)
    if a.threads: torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True
    rows = []
    for m in a.models: rows += bench_train(m, a, dev, a.modes)
    if a.fastreid_config:
        try: rows += bench_fastreid(a.fastreid_config, a, dev)
        except Exception as e: rows.append(dict(kind='train', model='FastReID', mode='-', error=f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"))
    rows += bench_eval(a, dev)
    doc = dict(**provenance(__file__), device=str(dev), toy=a.toy, rows=rows)
    print(f"\n{doc['hardware']}; device {dev}{' — TOY sizes' if a.toy else ''}\n")
    print('| model | mode | batch | size | s/iter | images/s |\n|---|---|---:|---|---:|---:|')
    for r in rows:
        if r['kind'] != 'train': continue
        if 'error' in r: print(f"| {r['model']} | {r['mode']} | - | - | - | failed: {r['error']} |"); continue
        print(f"| {r['model']} | {r['mode']} | {r['batch']} | {r['size'][0]}x{r['size'][1]} | {r['s_per_iter']:.3f} | {r['images_per_s']:.1f} |")
    print('\n| what | size | seconds |\n|---|---|---:|')
    for r in rows:
        if r['kind'] in ('eval', 'rerank'):
            print(f"| {'evaluate()' if r['kind'] == 'eval' else 'k-reciprocal re-ranking'} | {r['case']} {r['nq']:,} x {r['ng']:,} | {r['seconds']:.3f} |")
    save_json(doc, a.out)

if __name__ == '__main__':
    main()
