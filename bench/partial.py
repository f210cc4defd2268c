#!/usr/bin/env python
"""Partial re-id check on real data: deep spatial reconstruction (DSR, reid_nb.dsr) on cut and occluded Market-proxy queries.

The Market-1501 proxy split of bench/train_market.py (`_common.market_proxy`: 375 test ids, split seed 0). A partial model
(`meta_arch='partial'`: global + foreground branch) starts from the trained bagtricks model of train_market.py
(--source; its backbone and global branch; the foreground branch's neck and classifier start as copies of the
global ones) and is fine-tuned with the `partial` recipe for --epochs epochs on the same 376 train ids. The queries are
then degraded three ways, the gallery kept whole:
  full      the query as it is
  cut       only the top 50-70% of its rows (fraction drawn per query, seeded), resized back to the input size, as
            FastReID feeds partial images (stretched to the model's input)
  occluded  a rectangle of 20-40% of the image area (aspect 1/2..2, position uniform, seeded) filled with the ImageNet
            mean colour (which the model's input normalisation maps to 0)
The 375 test identities are split in two halves (seeded): lambda (the DSR weight) is chosen on the validation half —
one lambda for partial queries, maximising the mean of rank-1 and mAP over the cut and occluded queries — and every
number in the table is on the other half, full queries included (with the same lambda).

    python bench/partial.py                     # ~25 min on one core: 2 epochs fine-tuning, extraction, DSR
    python bench/partial.py --epochs 0          # no fine-tuning: the foreground branch stays a copy (a smoke run)

Root: --root, else $REID_NB_MARKET, else ../shared/data/market1501_train (skips cleanly when absent).
Results: bench/results/partial.json (--results DIR, '' for none) with the command, date, hardware and commit.
"""
import argparse, math, sys, time
from pathlib import Path
from _common import RESULTS, MARKET_MODEL, N_TEST_IDS, market_root, market_found, market_proxy, proxy_note, provenance, save_json

CONDITIONS = ('full', 'cut', 'occluded')
MEAN_RGB = (124, 116, 104)  # ImageNet mean, 0-255

def degrade(img, mode:str, rng):
    "The query image under `mode`: as it is, its top 50-70% of rows, or with a mean-coloured rectangle over 20-40% of it."
    if mode == 'full': return img
    W, H = img.size
    if mode == 'cut': return img.crop((0, 0, W, max(1, round(H * rng.uniform(0.5, 0.7)))))
    if mode == 'occluded':
        area, aspect = rng.uniform(0.2, 0.4) * W * H, math.exp(rng.uniform(-math.log(2), math.log(2)))  # aspect h/w in [1/2, 2]
        h = min(H, round(math.sqrt(area * aspect))); w = min(W, round(area / h)); h = min(H, round(area / w))
        y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        img = img.copy(); img.paste(MEAN_RGB, (x, y, x + w, y + h)); return img
    raise ValueError(mode)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default=str(market_root()), help='Market-1501 folder (default: $REID_NB_MARKET, else ../shared/data/market1501_train)')
    p.add_argument('--source', default=str(MARKET_MODEL), help='trained bagtricks checkpoint (bench/train_market.py)')
    p.add_argument('--epochs', type=int, default=2, help='fine-tuning epochs with the partial recipe (0: none)')
    p.add_argument('--base-lr', type=float, default=3.5e-4)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--rea-prob', type=float, default=None, help="random erasing in the fine-tuning (default: the partial recipe's, 0 as FastReID)")
    p.add_argument('--k', type=int, default=100, help='gallery items re-ranked by DSR per query (FastReID: 100)')
    p.add_argument('--n-test-ids', type=int, default=N_TEST_IDS)
    p.add_argument('--seed', type=int, default=0, help='fine-tuning, query degradation and the lambda/test halves (the split has its own, fixed seed)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--limit-ids', type=int, default=0, help='use only the first N identities (smoke tests)')
    p.add_argument('--out', default='/tmp/partial')
    p.add_argument('--results', default=str(RESULTS), help="folder for partial.json ('' for none)")
    a = p.parse_args(argv)

    import numpy as np, torch
    torch.set_num_threads(a.threads)
    from torch.utils.data import DataLoader, Dataset
    from reid_nb.core import seed_everything
    from reid_nb.data.loaders import load_image
    from reid_nb.models import build_model, load_reid_model
    from reid_nb.backbones import load_weights
    from reid_nb.evaluate import Features
    from reid_nb.metrics import compute_distance, evaluate_rank
    from reid_nb.learner import recipe_dataloaders, reid_learner
    from reid_nb.dsr import dsr_factors, dsr_rerank, fuse_dsr

    if not market_found(a.root): return 0
    if not Path(a.source).is_file(): print(f"skipped: no source model at {a.source} (run bench/train_market.py first)"); return 0
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    seed_everything(a.seed)
    df = market_proxy(a.root, a.n_test_ids, limit_ids=a.limit_ids)

    # the partial model, from the trained bagtricks model
    t0 = time.time()
    src = load_reid_model(a.source)
    b = dict(src.build_args); size = src.reid_meta.size
    model = build_model(**{**b, 'meta_arch': 'partial', 'pretrained': False})
    rep = load_weights(model, src.state_dict(), strict=False, source=a.source)
    assert {k.split('.')[1] for k in rep.missing} <= {'occ_unit', 'bnneck_occ', 'weight_occ'}, rep.problems()
    with torch.no_grad():
        model.heads.bnneck_occ.load_state_dict(model.heads.bottleneck.state_dict())
        model.heads.weight_occ.copy_(model.heads.weight)
    rea = {} if a.rea_prob is None else dict(rea_prob=a.rea_prob)
    dls = recipe_dataloaders(df, 'partial', size=size, bs=a.bs, num_instances=4, test_bs=256, num_workers=0, seed=a.seed, **rea)
    if a.epochs:
        seed_everything(a.seed)
        learn = reid_learner(dls, recipe='partial', model=model, base_lr=a.base_lr, epochs=a.epochs)
        learn.fit_reid(evaluate=False)
        learn.save_reid_model(out/'partial.pth')
    t_train = time.time() - t0
    print(f"partial model: {a.epochs} epochs from {a.source} in {t_train/60:.1f} min", flush=True)
    model.eval()

    class Degraded(Dataset):
        def __init__(self, frame, mode):
            self.df, self.mode, self.tfms = frame.reset_index(drop=True), mode, dls.query.dataset.tfms
        def __len__(self): return len(self.df)
        def __getitem__(self, i):
            rng = np.random.default_rng([a.seed, CONDITIONS.index(self.mode), i])
            return self.tfms(degrade(load_image(self.df.path[i]), self.mode, rng)), int(self.df.pid[i]), int(self.df.camid[i])

    @torch.no_grad()
    def extract(frame, mode):
        "Features of the foreground (FastReID's test embedding) and of the global branch; the source model's; spatial features."
        fg, gl, sr, sp, w = [], [], [], [], []
        for img, _, _ in DataLoader(Degraded(frame, mode), batch_size=128, num_workers=0):
            o = model(img, with_spatial=True)
            fg.append(o['foreground_neck']); gl.append(o['global_neck']); sr.append(src(img))
            sp.append(o['spatial'].half()); w.append(o['fg_weights'])
        pid, cam = frame.pid.to_numpy().copy(), frame.camid.to_numpy().copy()
        sp, w = torch.cat(sp), torch.cat(w)
        mk = lambda f: Features(torch.nn.functional.normalize(torch.cat(f), dim=1), pid, cam, spatial=sp, fg_weights=w)
        return dict(foreground=mk(fg), global_=mk(gl), source=mk(sr))

    t0 = time.time()
    qdf, gdf = df[df.split == 'query'].reset_index(drop=True), df[df.split == 'gallery'].reset_index(drop=True)
    gal = extract(gdf, 'full')
    qry = {m: extract(qdf, m) for m in CONDITIONS}
    t_extract = time.time() - t0
    print(f"features: {len(gdf)} gallery + 3 x {len(qdf)} query images in {t_extract/60:.1f} min; "
          f"{gal['foreground'].spatial.shape[1]} spatial positions of {gal['foreground'].spatial.shape[2]} channels", flush=True)

    test_pids = np.array(sorted(qdf.pid.unique()))
    perm = np.random.default_rng(a.seed).permutation(test_pids)
    halves = {'val': np.sort(perm[:len(perm) // 2]), 'test': np.sort(perm[len(perm) // 2:])}
    def half(f, h): return f[torch.as_tensor(np.isin(f.pids.numpy(), halves[h]))]
    def score(dist, q, g):
        r = evaluate_rank(dist, q.pids, g.pids, q.camids, g.camids)
        return float(r.cmc[0]) * 100, float(r.mAP) * 100

    lams = [round(x, 2) for x in np.arange(0, 1.0001, 0.05)]
    results, timing = {}, {}
    for h in ('val', 'test'):
        g = half(gal['foreground'], h); gs = g.spatial.float()
        t = time.time(); L = dsr_factors(gs); timing[f'factors_{h}'] = (time.time() - t) / len(g)
        for m in CONDITIONS:
            q = half(qry[m]['foreground'], h)
            for name in ('source', 'global_', 'foreground'):
                results[(h, m, name)] = {0.: score(compute_distance(half(qry[m][name], h).feats, half(gal[name], h).feats), q, g)}
            dist = compute_distance(q.feats, g.feats)
            qs = q.spatial.float()
            for variant in ('fastreid', 'paper'):
                if h == 'val' and m == 'full': continue   # lambda is chosen on partial queries only
                t = time.time()
                _, idx, d = dsr_rerank(dist, qs, q.fg_weights, gs, k=a.k, lam=0., variant=variant, factors=L, return_dsr=True)
                timing[(h, m, variant)] = (time.time() - t) / len(q)
                results[(h, m, variant)] = {lam: score(fuse_dsr(dist, (idx, d), qs, q.fg_weights, gs, lam, variant), q, g) for lam in lams}
            if (h, m, 'paper') in timing:
                print(f"{h} {m}: {len(q)} queries x {len(g)} gallery; DSR {timing[(h, m, 'fastreid')]*1000:.0f} ms/query, "
                      f"paper variant {timing[(h, m, 'paper')]*1000:.0f} ms/query", flush=True)

    def chosen(variant, conds=('cut', 'occluded')):
        return max(lams, key=lambda l: sum(sum(results[('val', m, variant)][l]) for m in conds))
    lam = {v: chosen(v) for v in ('fastreid', 'paper')}
    lam_each = {(v, m): chosen(v, (m,)) for v in ('fastreid', 'paper') for m in ('cut', 'occluded')}

    print(f"\nMarket-1501 proxy, test half ({len(halves['test'])} ids; lambda chosen on the other {len(halves['val'])}), "
          f"{b['arch']} @ {size[0]}x{size[1]}, k={a.k}; rank-1 / mAP")
    print(f"| queries | source bagtricks (global) | partial: global branch | partial: foreground (FastReID's embedding) | "
          f"+ DSR (FastReID, λ={lam['fastreid']}) | + DSR paper variant (λ={lam['paper']}) |")
    print('|:--|--:|--:|--:|--:|--:|')
    fmt = lambda s: f"{s[0]:.1f} / {s[1]:.1f}"
    rows = []
    for m in CONDITIONS:
        r = dict(queries=m, source=results[('test', m, 'source')][0.], global_branch=results[('test', m, 'global_')][0.],
                 foreground=results[('test', m, 'foreground')][0.], dsr=results[('test', m, 'fastreid')][lam['fastreid']],
                 paper=results[('test', m, 'paper')][lam['paper']])
        rows.append(r)
        print(f"| {m} | {fmt(r['source'])} | {fmt(r['global_branch'])} | {fmt(r['foreground'])} | {fmt(r['dsr'])} | {fmt(r['paper'])} |")
    ms = lambda v: np.mean([timing[('test', m, v)] for m in CONDITIONS]) * 1000
    print(f"DSR cost per query at k={a.k}, CPU x{a.threads}: {ms('fastreid'):.0f} ms (FastReID form, closed-form ridge), "
          f"{ms('paper'):.0f} ms (paper variant); + {timing['factors_test']*1000:.1f} ms per gallery image once (Cholesky factors). "
          "No GPU in this run.")
    gain = {m: np.subtract(rows[i]['dsr'], rows[i]['foreground']) for i, m in enumerate(CONDITIONS)}
    ok_cut = bool(gain['cut'][0] > 0 and gain['cut'][1] > 0)
    ok_full = bool(min(gain['full']) >= -1)
    print(f"DSR - global on cut queries: rank-1 {gain['cut'][0]:+.1f}, mAP {gain['cut'][1]:+.1f} ({'PASS' if ok_cut else 'FAIL'}: must be > 0); "
          f"occluded: {gain['occluded'][0]:+.1f} / {gain['occluded'][1]:+.1f}; "
          f"full queries: {gain['full'][0]:+.1f} / {gain['full'][1]:+.1f} ({'PASS' if ok_full else 'FAIL'}: must be >= -1)")
    print("lambda chosen per condition on the validation half (for reference): "
          + ', '.join(f"{v} {m} {l}" for (v, m), l in lam_each.items()))

    res_json = {
        **provenance(__file__, argv),
        'dataset': 'Market1501', 'arch': b['arch'], 'size': list(size), 'source': a.source, 'epochs': a.epochs, 'base_lr': a.base_lr, 'rea_prob': a.rea_prob, 'k': a.k,
        'data': (f"{proxy_note(df)}; test ids halved (seed {a.seed}): "
                 f"{len(halves['val'])} for choosing lambda, {len(halves['test'])} reported"),
        'lambda': lam, 'lambda_per_condition': {f"{v}/{m}": l for (v, m), l in lam_each.items()},
        'rows': [{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()} for r in rows],
        'ms_per_query': {v: ms(v) for v in ('fastreid', 'paper')}, 'ms_per_gallery_factor': timing['factors_test'] * 1000,
        'val_curves': {f"{v}/{m}": {str(l): results[('val', m, v)][l] for l in lams} for v in ('fastreid', 'paper') for m in ('cut', 'occluded')},
        'test_curves': {f"{v}/{m}": {str(l): results[('test', m, v)][l] for l in lams} for v in ('fastreid', 'paper') for m in CONDITIONS},
        'train_minutes': t_train / 60, 'extract_minutes': t_extract / 60, 'pass_cut': ok_cut, 'pass_full': ok_full}
    save_json(res_json, out/'results.json')
    if a.results: save_json(res_json, Path(a.results)/'partial.json'); print(f"results: {Path(a.results)/'partial.json'}")
    return 0 if ok_cut and ok_full else 1

if __name__ == '__main__': sys.exit(main())
