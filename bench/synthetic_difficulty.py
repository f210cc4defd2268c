"""How hard is `synthetic_reid`? Raw-pixel retrieval vs a tiny CNN trained for ~60 s on CPU.

Run (heavy jobs one at a time on the shared machine):

    python bench/synthetic_difficulty.py [--n-ids 200 --n-cams 6 --imgs-per-id 10 --seconds 60] [--out FILE | --out '']

Writes bench/results/synthetic_difficulty.json (`--out`; '' writes nothing): the provenance block of bench/_common.py,
the settings, the split's counts, the CNN's iterations and times, and `rows` (key, method, rank1 and mAP in %; chance
has no mAP: null). 01b_data.synthetic reads its table from that file.

The dataset is split by `make_query_gallery` (half the identities are test identities, the other half train the
CNN). Evaluation is the Market-1501 protocol in plain numpy: cosine distance, gallery images with the query's pid
*and* camera are ignored, queries without a cross-camera match are skipped; rank-1 and mAP.

Rows printed:
- raw pixels: flattened 32×16 downsampled RGB, cosine similarity;
- raw pixels, per-image standardised: each image minus its mean, divided by its std (removes global illumination);
- tiny CNN: 4 conv-BN-ReLU-maxpool blocks (32-64-128-128 channels), global average pooling, linear classifier,
  cross-entropy on the train identities with random horizontal flips, Adam 3e-3, batch 64, 64×32 input,
  trained for `--seconds` × `--threads` of process CPU time (what `--seconds` of wall time gives on idle cores, so
  other jobs on the same cores do not change the result); its 128-d pooled features are the embedding.
- chance: expected rank-1 of a random ranking (mean over queries of matches / gallery size).
"""
import argparse, tempfile, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
from _common import provenance, save_json, RESULTS
from reid_nb.data.synthetic import synthetic_reid


def market_eval(qf, gf, q_pids, g_pids, q_cams, g_cams):
    "Rank-1 and mAP under the Market protocol with cosine distance (plain numpy loop over queries)."
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True); gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    sim = qf @ gf.T; r1, aps, chance = [], [], []
    for i in range(len(qf)):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        match = g_pids[keep] == q_pids[i]
        if not match.any(): continue
        m = match[np.argsort(-sim[i][keep], kind='stable')]
        r1.append(m[0]); hits = np.cumsum(m); aps.append((hits[m] / (np.flatnonzero(m) + 1)).mean())
        chance.append(match.mean())
    return float(np.mean(r1)), float(np.mean(aps)), float(np.mean(chance)), len(r1)


def block(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True), nn.MaxPool2d(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n-ids', type=int, default=200); ap.add_argument('--n-cams', type=int, default=6)
    ap.add_argument('--imgs-per-id', type=int, default=10); ap.add_argument('--seconds', type=float, default=60)
    ap.add_argument('--seed', type=int, default=0); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default=str(RESULTS/'synthetic_difficulty.json'), help="result file ('': none)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
    with tempfile.TemporaryDirectory() as d:
        t = time.time(); df = synthetic_reid(d, n_ids=a.n_ids, n_cams=a.n_cams, imgs_per_id=a.imgs_per_id, seed=a.seed); t_gen = time.time() - t
        X = torch.tensor(np.stack([np.asarray(Image.open(p).convert('RGB'), np.float32) / 255 for p in df.path])).permute(0, 3, 1, 2)
    pids, cams, split = df.pid.to_numpy(), df.camid.to_numpy(), df.split.to_numpy()
    q, g, tr = split == 'query', split == 'gallery', split == 'train'
    ev = lambda f: market_eval(f[q], f[g], pids[q], pids[g], cams[q], cams[g])
    rows = []
    raw = F.interpolate(X, size=(32, 16), mode='area').flatten(1).numpy()
    r1, mAP, chance, nq = ev(raw); rows.append(('raw', 'raw pixels 32x16, cosine', r1, mAP))
    std = (raw - raw.mean(1, keepdims=True)) / raw.std(1, keepdims=True)
    r1s, mAPs, _, _ = ev(std); rows.append(('raw_std', 'raw pixels, per-image standardised', r1s, mAPs))

    Xs = F.interpolate(X, size=(64, 32), mode='area'); ids = np.unique(pids[tr]); lab = {p: i for i, p in enumerate(ids)}
    Xtr, ytr = Xs[torch.from_numpy(tr)], torch.tensor([lab[p] for p in pids[tr]])
    net = nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Linear(128, len(ids)); opt = torch.optim.Adam([*net.parameters(), *head.parameters()], 3e-3)
    # the budget is process CPU time (all threads) = seconds × threads, i.e. `seconds` of wall time on `threads`
    # idle cores: the result then does not depend on how busy the shared machine is
    t, c0 = time.time(), time.process_time(); it = 0
    while time.process_time() - c0 < a.seconds * a.threads:
        b = torch.randint(len(Xtr), (64,)); xb = Xtr[b]
        xb = torch.where(torch.rand(len(b), 1, 1, 1) < .5, xb.flip(3), xb)
        loss = F.cross_entropy(head(net(xb)), ytr[b]); opt.zero_grad(); loss.backward(); opt.step(); it += 1
    t_train, cpu_train = time.time() - t, time.process_time() - c0
    net.eval()
    with torch.no_grad(): f = torch.cat([net(x) for x in Xs.split(256)]).numpy()
    r1c, mAPc, _, _ = ev(f); rows.append(('cnn', f'tiny CNN, {a.seconds:.0f} s x {a.threads} cores CE ({it} iters)', r1c, mAPc))
    rows.append(('chance', 'chance (random ranking)', chance, None))

    print(f"CNN training: {it} iterations, {cpu_train:.0f} s CPU, {t_train:.0f} s wall")
    print(f"synthetic_reid(n_ids={a.n_ids}, n_cams={a.n_cams}, imgs_per_id={a.imgs_per_id}, seed={a.seed}): {len(df)} images "
          f"in {t_gen:.1f} s; train {tr.sum()} imgs / {len(ids)} ids, query {q.sum()}, gallery {g.sum()}, {nq} valid queries")
    print(f"| {'method':<45} | rank-1 | mAP   |\n|{'-' * 47}|--------|-------|")
    for _, n, r, m in rows: print(f"| {n:<45} | {100 * r:5.1f}% | {'  -  ' if m is None else f'{100 * m:4.1f}%'} |")
    if a.out:
        doc = dict(**provenance(__file__, threads=a.threads),
                   settings=dict(n_ids=a.n_ids, n_cams=a.n_cams, imgs_per_id=a.imgs_per_id, seed=a.seed, seconds=a.seconds, threads=a.threads),
                   data=dict(images=len(df), train_images=int(tr.sum()), train_ids=len(ids), test_ids=int(len(np.unique(pids[~tr]))),
                             query=int(q.sum()), gallery=int(g.sum()), valid_queries=nq, generate_seconds=t_gen),
                   cnn=dict(iterations=it, cpu_seconds=cpu_train, wall_seconds=t_train),
                   rows=[dict(key=k, method=n, rank1=100 * r, mAP=None if m is None else 100 * m) for k, n, r, m in rows])
        print(f"results: {save_json(doc, a.out)}")


if __name__ == '__main__': main()
