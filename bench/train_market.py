#!/usr/bin/env python
"""Re-id training check on real data: a Market-1501 proxy split, CPU, an ImageNet-pretrained small backbone.

The 751 identities of Market-1501's `bounding_box_train` are split with `_common.market_proxy` (half of them,
375, become query/gallery, Market's protocol; a fixed split seed); the other half trains a model with a FastReID recipe through
the same API the `reid-nb train` command uses (`recipe_dataloaders` -> `reid_learner` -> `fit_reid`).
The table compares it with the same backbone's untrained (ImageNet-only) features on the same split.

    python bench/train_market.py                 # 6 epochs at 128x64: ~22 min training + ~5 min evaluation, 1 core
    python bench/train_market.py --size 96 48 --epochs 5    # ~14 min training
    python bench/train_market.py --root /path/to/market1501_train --arch efficientnet_lite0

Measured (2-core shared machine, 1 torch thread, MobileNetV2 with its shipped ImageNet weights):
    128x64, 6 ep: untrained rank-1 12.1 / mAP 4.4 / mINP 0.8 -> trained 65.1 / 48.6 / 21.4 (21.7 min; commit 154f4a7,
                  bench/results/train_market_mobilenetv2_100.json)
     96x48, 5 ep: untrained rank-1 10.5 / mAP 4.3 / mINP 0.7 -> trained 48.4 / 32.8 / 11.1 (14.2 min)

Root: --root, else $REID_NB_MARKET, else ../shared/data/market1501_train (skips cleanly when absent).
Results: <out>/results.json, and bench/results/train_market_<arch>.json (--results DIR, '' for none) with the
command, date, hardware and commit that produced them; the model-zoo page (nbs/90_zoo.ipynb) reads that folder.
"""
import argparse, sys, time
from pathlib import Path
from _common import RESULTS, N_TEST_IDS, market_root, market_found, market_proxy, proxy_note, provenance, save_json

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default=str(market_root()), help='Market-1501 folder (default: $REID_NB_MARKET, else ../shared/data/market1501_train)')
    p.add_argument('--arch', default='mobilenetv2_100', help="backbone with shipped ImageNet weights: mobilenetv2_100 or efficientnet_lite0")
    p.add_argument('--recipe', default='bagtricks')
    p.add_argument('--epochs', type=int, default=6)
    p.add_argument('--size', type=int, nargs=2, default=[128, 64], help='H W (Market crops are 128x64)')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--num-instances', type=int, default=4)
    p.add_argument('--base-lr', type=float, default=7e-4)
    p.add_argument('--steps', type=int, nargs='+', default=[80, 110], help='multi-step epochs on the recipe\'s 120-epoch scale')
    p.add_argument('--n-test-ids', type=int, default=N_TEST_IDS)
    p.add_argument('--seed', type=int, default=0, help='training seed (the split has its own, fixed: _common.SPLIT_SEED)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (where other jobs share the cores, 1 can be much faster than several)')
    p.add_argument('--limit-ids', type=int, default=0, help='use only the first N identities (smoke tests)')
    p.add_argument('--flip', action='store_true', help='flip TTA at evaluation (doubles its cost)')
    p.add_argument('--out', default='/tmp/train_market')
    p.add_argument('--results', default=str(RESULTS), help="folder for train_market_<arch>.json ('' for none)")
    a = p.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    from reid_nb.core import seed_everything
    from reid_nb.backbones import shipped_weights
    from reid_nb.models import build_model
    from reid_nb.evaluate import extract_features, evaluate
    from reid_nb.learner import recipe_dataloaders, reid_learner

    if not market_found(a.root): return 0
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    seed_everything(a.seed)
    df = market_proxy(a.root, a.n_test_ids, limit_ids=a.limit_ids)
    n = df.split.value_counts().to_dict()
    print(f"split: {df[df.split=='train'].pid.nunique()} train ids / {n['train']} images; "
          f"{df[df.split=='query'].pid.nunique()} test ids: {n['query']} query, {n['gallery']} gallery", flush=True)
    dls = recipe_dataloaders(df, a.recipe, size=tuple(a.size), bs=a.bs, num_instances=a.num_instances, test_bs=256, num_workers=0, seed=a.seed)
    weights = shipped_weights(a.arch)

    t0 = time.time()
    base = build_model(a.arch, num_classes=0, pretrained=weights, last_stride=1).eval()
    r0 = evaluate(extract_features(base, dls.query, flip=a.flip, progress=False), extract_features(base, dls.gallery, flip=a.flip, progress=False), verbose=False)
    t_base = time.time() - t0
    print(f"ImageNet-only {a.arch}: rank-1 {r0.cmc[0]*100:.1f}  mAP {r0.mAP*100:.1f}  mINP {r0.mINP*100:.1f}  ({t_base:.0f} s)", flush=True)

    seed_everything(a.seed)
    learn = reid_learner(dls, a.arch, a.recipe, pretrained=weights, base_lr=a.base_lr, epochs=a.epochs, steps=a.steps,
                         eval_period=10**6, flip=a.flip)  # evaluate once, after the last epoch
    t0 = time.time()
    res = learn.fit_reid(save_dir=out/'checkpoints')
    t_train = time.time() - t0

    rows = [('ImageNet-only (untrained)', r0, t_base), (f'{a.recipe} {a.epochs} ep', res, t_train)]
    print(f"\nMarket-1501 proxy ({a.n_test_ids} test ids, split seed {df.attrs['split_seed']}), {a.arch} @ {a.size[0]}x{a.size[1]}, CPU x{a.threads}")
    print('| model | rank-1 | mAP | mINP | time |\n|:--|--:|--:|--:|--:|')
    for name, r, t in rows: print(f"| {name} | {r.cmc[0]*100:.1f} | {r.mAP*100:.1f} | {r.mINP*100:.1f} | {t/60:.1f} min |")
    ratio = float(res.cmc[0] / max(r0.cmc[0], 1e-9))
    print(f"rank-1 ratio trained / untrained: {ratio:.2f} ({'PASS' if ratio >= 2 else 'FAIL'}: needs >= 2)")
    res_json = {
        **provenance(__file__, argv), 'dataset': 'Market1501', 'data': proxy_note(df), 'seed': a.seed,
        'arch': a.arch, 'pretrained': f'ImageNet (shipped_weights({a.arch!r}))', 'recipe': a.recipe, 'size': a.size, 'epochs': a.epochs,
        'base_lr': a.base_lr, 'flip': a.flip,
        'rows': [{'model': name, 'epochs': 0 if r is r0 else a.epochs, 'rank1': float(r.cmc[0]), 'mAP': float(r.mAP), 'mINP': float(r.mINP),
                  'minutes': t / 60} for name, r, t in rows],
        'untrained': {'rank1': float(r0.cmc[0]), 'mAP': float(r0.mAP), 'mINP': float(r0.mINP)},
        'trained': {'rank1': float(res.cmc[0]), 'mAP': float(res.mAP), 'mINP': float(res.mINP)},
        'train_minutes': t_train / 60, 'ratio': ratio}
    save_json(res_json, out/'results.json')
    if a.results: save_json(res_json, Path(a.results)/f'train_market_{a.arch}.json'); print(f"results: {Path(a.results)/f'train_market_{a.arch}.json'}")
    return 0 if ratio >= 2 else 1

if __name__ == '__main__': sys.exit(main())
