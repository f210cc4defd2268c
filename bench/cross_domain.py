"""Cross-domain re-id: a Market-1501-proxy model adapted to CUHK03 (camera pair 1) without its labels.

Settings of `reid_nb.adapt.adapt_domain` on the same source model, the same split and the same budget (`adapt_domain`'s
defaults unless --rounds / --epochs / --steps / --momentum are given): direct transfer (`none`), the DBSCAN baseline
with its tuned eps (`dbscan`), the mixture method (`mlt`), Cluster Contrast (`cc`) and Cluster Contrast with the
camera-aware parts, alone and together (`cc_camnorm`: camera-normalised clustering, `cc_proxies`: camera proxies,
`cc_cam`: both). The CUHK03 identities
are split (seed 0) into an adaptation half (images only; labels used only to score the pseudo labels) and a test half
(query: one camera-A image per identity, gallery: its camera-B images; the Market protocol, which here removes nothing
since queries and gallery never share a camera).

One setting and seed per call writes a partial JSON (run them in parallel, one core each); `--assemble` prints the
markdown table and writes bench/results/cross_domain.json:

    python bench/cross_domain.py --setting none
    python bench/cross_domain.py --setting cc --seed 0     # ... and --seed 1, and the other settings
    python bench/cross_domain.py --assemble
    python bench/cross_domain.py --labels      # pseudo-label quality of the source features, piece by piece (no training)
"""
import argparse, json, os, time
from pathlib import Path
from _common import RESULTS, DATA, MARKET_MODEL, provenance, save_json

PARTS = RESULTS / 'cross_domain'

def run(a):
    import numpy as np, torch
    torch.set_num_threads(a.threads)
    from reid_nb.data.datasets import cuhk03_pairs, cross_domain_split
    from reid_nb.adapt import adapt_domain
    root = Path(a.root)
    if not (root / 'images').is_dir():
        print(f"skipped: CUHK03 pair folder {root} not found (pass --root or set REID_NB_CUHK03)"); return None
    if not Path(a.weights).is_file():
        print(f"skipped: source weights {a.weights} not found (pass --weights)"); return None
    adapt_df, test_df = cross_domain_split(cuhk03_pairs(root), seed=a.split_seed)
    print(f"adaptation: {len(adapt_df)} images, {adapt_df.pid.nunique()} ids (labels unused); test: "
          f"{(test_df.split == 'query').sum()} queries, {(test_df.split == 'gallery').sum()} gallery", flush=True)
    t0 = time.time()
    method, extra = SETTINGS[a.setting]
    given = dict(rounds=a.rounds, epochs=a.epochs, steps=a.steps, momentum=a.momentum, bs=a.bs, num_instances=a.num_instances)
    kw = dict({k: v for k, v in given.items() if v is not None}, seed=a.seed, eval_df=test_df, truth=adapt_df.pid.to_numpy(), **extra)
    _, table = adapt_domain(a.weights, adapt_df.drop(columns='pid'), method, **kw)
    out = dict(setting=a.setting, seed=a.seed, seconds=round(time.time() - t0, 1), cpu_seconds=round(time.process_time(), 1),   # CPU: one core's time
               rounds=table.to_dict('records'),
               args={k: v for k, v in vars(a).items() if k not in ('assemble', 'labels')}, **provenance(__file__))
    save_json(out, PARTS / f"{a.setting}_s{a.seed}.json")
    print(table.to_string(), flush=True)
    return out

def label_quality(a):
    "Pseudo-label quality of the source model's features on the adaptation half (no training): what each piece adds."
    import torch, torch.nn.functional as F
    torch.set_num_threads(a.threads)
    from reid_nb.data.datasets import cuhk03_pairs, cross_domain_split
    from reid_nb.models import load_reid_model
    from reid_nb.data.loaders import ReIDDataset, ReIDLoader
    from reid_nb.data.transforms import build_transforms
    from reid_nb.rerank import jaccard_distance
    from reid_nb.pseudo_labels import (granularity_features, mixed_jaccard, dbscan_labels, mix_features, kmeans_labels,
                                       transport_labels, cluster_quality)
    root = Path(a.root)
    if not (root / 'images').is_dir() or not Path(a.weights).is_file(): print("skipped: CUHK03 folder or source weights not found"); return
    adapt_df, _ = cross_domain_split(cuhk03_pairs(root), seed=a.split_seed)
    y = adapt_df.pid.to_numpy()
    m = load_reid_model(a.weights)
    dl = ReIDLoader(ReIDDataset(adapt_df, build_transforms(m.reid_meta.input_size(), is_train=False)), batch_size=128)   # the order adapt_domain extracts in
    f = granularity_features(m, dl, 2)
    rows = []
    def add(name, lab): rows.append(dict(labels=name, **cluster_quality(lab, y)))
    for w in (0., 0.3):
        d = jaccard_distance(f['global'], 30, 6) if w == 0 else mixed_jaccard(f, w, 30, 6)
        for eps in (0.5, 0.6): add(f"DBSCAN eps {eps}, {'global' if w == 0 else f'mixture w={w}'}", dbscan_labels(d, eps, 4))
    z = mix_features(f, 0.3)
    for k in (270, 370, 410):
        yk, ck = kmeans_labels(z, k)
        add(f"K-means K={k} (mixture feature)", yk)
        add(f"  + Sinkhorn λ=25, uniform", transport_labels(F.normalize(z, dim=1) @ F.normalize(torch.as_tensor(ck), dim=1).T, 25.))
    lines = ['| labels (source model, adaptation half) | clusters | outliers | NMI | ARI | pair precision | pair recall | pair F1 |',
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    lines += [f"| {r['labels']} | {r['clusters']} | {r['outliers']} | {r['nmi']:.3f} | {r['ari']:.3f} | {r['pair_precision']:.3f} | "
              f"{r['pair_recall']:.3f} | {r['pair_f1']:.3f} |" for r in rows]
    print('\n'.join(lines))
    save_json(dict(**provenance(__file__), table='\n'.join(lines), rows=rows), RESULTS / 'cross_domain_labels.json')

SETTINGS = {'none': ('none', {}), 'dbscan': ('dbscan', {}), 'mlt': ('mlt', {}),   # setting: (method, options)
            'cc': ('cc', dict(camera_norm=False, camera_proxies=False)), 'cc_camnorm': ('cc', dict(camera_norm=True, camera_proxies=False)),
            'cc_proxies': ('cc', dict(camera_norm=False, camera_proxies=True)), 'cc_cam': ('cc', dict(camera_norm=True, camera_proxies=True)),
            'cc_cam_3x': ('cc', dict(camera_norm=True, camera_proxies=True, steps=360))}   # the defaults with 3x the steps: where it saturates
NAMES = {'none': 'direct transfer', 'dbscan': 'DBSCAN baseline (tuned eps)', 'mlt': 'mixture (MLT-style)', 'cc': 'cluster contrast',
         'cc_camnorm': 'cc + camera-normalised clustering', 'cc_proxies': 'cc + camera proxies', 'cc_cam': 'cc + camera-aware (both)',
         'cc_cam_3x': 'cc + camera-aware, 3x the steps'}

def assemble():
    import numpy as np
    parts = [json.loads(p.read_text()) for p in sorted(PARTS.glob('*.json'))]
    if not parts: print(f"no partial results in {PARTS}"); return
    lines = ['| setting (%) | seed | rank-1 | mAP | mINP | student mAP | pseudo-label NMI per round | clusters per round | steps | run time |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    summary = {}
    for s in NAMES:
        runs = [p for p in parts if p['setting'] == s]
        for p in sorted(runs, key=lambda p: p['seed']):
            last = p['rounds'][-1]
            nmi = ' / '.join(f"{r['nmi']:.3f}" for r in p['rounds'][1:] if 'nmi' in r) or '–'
            cl = ' / '.join(str(int(r['clusters'])) for r in p['rounds'][1:] if 'clusters' in r) or '–'
            st = f"{100 * last['student_mAP']:.1f}" if last.get('student_mAP') == last.get('student_mAP') and 'student_mAP' in last else '–'
            steps = int(sum(r.get('steps') or 0 for r in p['rounds'][1:] if r.get('steps') == r.get('steps'))) or '–'
            lines.append(f"| {NAMES[s]} | {p['seed'] if s != 'none' else '–'} | {100 * last['rank1']:.1f} | {100 * last['mAP']:.1f} | "
                         f"{100 * last['mINP']:.1f} | {st} | {nmi} | {cl} | {steps} | {p['seconds'] / 60:.1f} min |")
        if runs:
            m = {k: [100 * p['rounds'][-1][k] for p in runs] for k in ('rank1', 'mAP', 'mINP')}
            summary[s] = {k: dict(mean=float(np.mean(v)), min=float(np.min(v)), max=float(np.max(v)), n=len(v)) for k, v in m.items()}
    for s, v in summary.items():
        if v['mAP']['n'] > 1:
            sp = lambda k: f"{v[k]['mean']:.1f} (range {v[k]['min']:.1f}–{v[k]['max']:.1f})"
            lines.append(f"| **{NAMES[s]}, mean of {v['mAP']['n']} seeds** | | {sp('rank1')} | {sp('mAP')} | {sp('mINP')} | | | | | |")
    table = '\n'.join(lines)
    print(table)
    save_json(dict(**provenance(__file__), table=table, summary=summary, names=NAMES, runs=parts, commands=sorted({p['command'] for p in parts})),
              RESULTS / 'cross_domain.json')

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default=os.environ.get('REID_NB_CUHK03', str(DATA / 'cuhk03_pair1_train')))
    p.add_argument('--weights', default=os.environ.get('REID_NB_SOURCE', str(MARKET_MODEL)),
                   help='the source model: a reid_nb checkpoint trained on the Market-1501 proxy (bench/train_market.py)')
    p.add_argument('--setting', choices=list(SETTINGS), default='cc')
    p.add_argument('--seed', type=int, default=0, help='training seed (sampler, augmentation, K-means)')
    p.add_argument('--split-seed', type=int, default=0, help='the adaptation/test identity split')
    p.add_argument('--rounds', type=int, default=None, help="pseudo-label rounds (default: adapt_domain's)")
    p.add_argument('--epochs', type=int, default=None, help="fine-tuning epochs per round (default: adapt_domain's rule from --steps)")
    p.add_argument('--steps', type=int, default=None, help="optimiser steps per round (default: adapt_domain's)")
    p.add_argument('--momentum', type=float, default=None, help="EMA teacher momentum (default: adapt_domain's rule)")
    p.add_argument('--bs', type=int, default=None, help="P x K batch (default: adapt_domain's)")
    p.add_argument('--num-instances', type=int, default=None, help="K (default: adapt_domain's)")
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--assemble', action='store_true', help='print the table of the partial results')
    p.add_argument('--labels', action='store_true', help="only the pseudo-label quality of the source model's features (no training)")
    a = p.parse_args(argv)
    if a.assemble: return assemble()
    if a.labels: return label_quality(a)
    run(a)

if __name__ == '__main__': main()
