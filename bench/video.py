"""Single-frame vs tracklet matching on real data: the Market-1501 proxy's test identities as tracklets built from their
frame names (`0002_c1s1_000451_03.jpg`: identity, camera, sequence, frame), one model, several ways to match.

    python bench/video.py                       # the trained Market model (bench/_common.py's MARKET_MODEL)
    python bench/video.py --limit-ids 60 --video-epochs 0 --out /tmp/v.json      # a quick check

Test split: the 375 test identities of `market_proxy` (query and gallery images together) are cut into tracklets by
`reid_nb.data.video.tracklets_from_names` (one identity, camera and sequence; a jump of more than 500 frames starts a new
one); per identity and camera one tracklet (seeded) is the query, the others are gallery. Rows:
- `image → image`: the middle frame of each query tracklet against every frame of the gallery tracklets (single-frame matching);
- `image → tracklet (mean)`: that frame against the gallery tracklets;
- `tracklet → tracklet`: every frame in chunks of T (`frame_chunks`), pooled over time (mean / max / attention) before the
  head, chunk embeddings averaged per tracklet (`merge_chunks`); Market's (= MARS's) protocol: same identity and camera removed.
- `attention (frozen frames)`: the same frame model, only the temporal attention trained (batch-hard triplet on the train
  identities' tracklets, frame features cached): the fair attention-vs-mean comparison on one frame model.
- `video-trained (attention)`: the whole `VideoReIDModel` fine-tuned from the frame model on tracklets (`--video-epochs`).
Costs: seconds per training epoch of the image model (images) and of the video model (tracklets × T frames), one thread.
Results go to bench/results/video.json after the provenance block.
"""
import argparse, time
import numpy as np, pandas as pd, torch, torch.nn.functional as F
from _common import market_root, market_found, market_proxy, proxy_note, MARKET_MODEL, RESULTS, provenance, save_json

def frame_pooled(v, paths, size, bs=128):
    "Pooled frame features (N×C, before the head) of a video model's frame network, in eval mode."
    from reid_nb.data.loaders import load_image
    from reid_nb.data.transforms import build_transforms
    tf, out = build_transforms(size, is_train=False), []
    v.eval()
    with torch.no_grad():
        for i in range(0, len(paths), bs): out.append(v.frame_features(torch.stack([tf(load_image(p)) for p in paths[i:i + bs]]))[:, 0])
    return torch.cat(out)

def track_features(v, pooled, df, T):
    "One Features row per tracklet of `df`: chunks of T of its frames' cached pooled features, pooled over time, head, mean of chunks."
    from reid_nb.data.video import frame_chunks
    from reid_nb.evaluate import Features
    from reid_nb.video import merge_chunks
    rows, tids, pids, cams = [], [], [], []
    for tid, g in df.sort_values(['tracklet', 'frame']).groupby('tracklet', sort=False):
        ix = g['row'].to_numpy()
        for c in frame_chunks(len(ix), T): rows.append(ix[c]); tids.append(tid); pids.append(g.pid.iat[0]); cams.append(g.camid.iat[0])
    v.eval()
    with torch.no_grad():
        emb = torch.cat([v.heads(v.aggregate(pooled[torch.as_tensor(np.stack(rows[i:i + 512]))])[..., None, None]) for i in range(0, len(rows), 512)])
    return merge_chunks(Features(F.normalize(emb, dim=1), pids, cams, tids))

def image_features(v, pooled, df):
    from reid_nb.evaluate import Features
    with torch.no_grad(): emb = v.eval().heads(pooled[torch.as_tensor(df['row'].to_numpy().copy())][..., None, None])
    return Features(F.normalize(emb, dim=1), df.pid.to_numpy(), df.camid.to_numpy(), df.path.tolist())

def pk_chunks(rng, tracks, labels, P, K, T):
    "A P×K batch of random T-frame chunks (row indices), P identities × K tracklets."
    from reid_nb.data.video import frame_chunks
    ids = rng.choice(sorted(tracks), P, replace=False)
    rows, y = [], []
    for i in ids:
        for t in rng.choice(len(tracks[i]), K, replace=len(tracks[i]) < K):
            ch = frame_chunks(len(tracks[i][t]), T); rows.append(tracks[i][t][ch[rng.integers(len(ch))]]); y.append(labels[i])
    return torch.as_tensor(np.stack(rows)), torch.as_tensor(y)

def train_attention(v, pooled, train, T, iters, seed=0):
    "Train only `v.attention` (batch-hard triplet on the normalised tracklet embeddings); the frame network stays frozen."
    from reid_nb.losses import triplet_loss
    tracks = {}
    for tid, g in train.sort_values(['tracklet', 'frame']).groupby('tracklet', sort=False): tracks.setdefault(g.pid.iat[0], []).append(g['row'].to_numpy())
    tracks = {p: t for p, t in tracks.items() if len(t) >= 2}
    labels, rng = {p: i for i, p in enumerate(sorted(tracks))}, np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(v.attention.parameters(), lr=1e-3)
    v.eval(); v.attention.train()
    for it in range(iters):
        rows, y = pk_chunks(rng, tracks, labels, 16, 4, T)
        emb = v.heads(v.aggregate(pooled[rows])[..., None, None])
        loss = triplet_loss(emb, y, margin=0.3, norm_feat=True)
        opt.zero_grad(); loss.backward(); opt.step()
    v.eval()
    return float(loss.detach())

def score(name, protocol, res):
    m = res.metrics()
    return dict(method=name, protocol=protocol, queries=m['Queries'], rank1=round(m['Rank-1'], 2), mAP=round(m['mAP'], 2), mINP=round(m['mINP'], 2))

def epoch_cost(model, loader, steps, fwd):
    "Seconds per epoch, from `steps` timed training iterations (after one warm-up) × the loader's iterations per epoch."
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train(); it = iter(loader)
    times = []
    for s in range(steps + 1):
        x, y = next(it)
        t0 = time.perf_counter(); loss = fwd(model(x, y), y); opt.zero_grad(); loss.backward(); opt.step()
        if s: times.append(time.perf_counter() - t0)
    return float(np.mean(times)) * len(loader), len(loader)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--root', default=None, help='Market-1501 root (default: bench/_common.py market_root)')
    ap.add_argument('--weights', default=str(MARKET_MODEL), help='the trained image model')
    ap.add_argument('--seq-len', type=int, default=4, help='T: frames per chunk')
    ap.add_argument('--attn-iters', type=int, default=300, help='iterations of attention-only training (frozen frame model)')
    ap.add_argument('--video-epochs', type=float, default=1, help='epochs of whole-model video fine-tuning (0: skip)')
    ap.add_argument('--cost-steps', type=int, default=5, help='timed iterations per cost estimate')
    ap.add_argument('--limit-ids', type=int, default=0, help='smoke runs: only the first N identities')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default=str(RESULTS/'video.json'))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    root = market_root(a.root)
    if not market_found(root): return
    from reid_nb.models import load_reid_model
    from reid_nb.video import to_video, VideoReIDModel, pick_frames
    from reid_nb.data.video import tracklets_from_names, drop_short_tracklets
    from reid_nb.evaluate import evaluate
    from reid_nb.losses import cross_entropy_ls, triplet_loss
    t_start = time.time()
    df = market_proxy(root, limit_ids=a.limit_ids, n_test_ids=min(375, a.limit_ids // 2) if a.limit_ids else 375)
    model = load_reid_model(a.weights)
    size = model.reid_meta.input_size()
    T = a.seq_len
    tr = tracklets_from_names(df.assign(split=np.where(df.split == 'train', 'train', 'gallery')))
    tr['row'] = np.arange(len(tr))
    rng = np.random.default_rng(0)
    test = tr[tr.split != 'train'].copy()
    first = test.groupby('tracklet', sort=False)[['pid', 'camid']].first()
    q_tracks = [rng.choice(g.index.to_numpy()) for _, g in first.groupby(['pid', 'camid'])]
    test.loc[test.tracklet.isin(q_tracks), 'split'] = 'query'
    q, g = test[test.split == 'query'], test[test.split == 'gallery']
    counts = dict(train_images=int((tr.split == 'train').sum()), train_tracklets=int(tr.tracklet[tr.split == 'train'].nunique()),
                  query_tracklets=int(q.tracklet.nunique()), gallery_tracklets=int(g.tracklet.nunique()), gallery_images=len(g),
                  mean_tracklet_len=round(float(tr.groupby('tracklet').size().mean()), 2))
    print(counts)
    v = to_video(model, 'attention').eval()
    t0 = time.time(); pooled = frame_pooled(v, tr.path.tolist(), size); t_extract = time.time() - t0
    print(f"frame features: {len(tr)} images in {t_extract:.0f} s")
    ev = lambda qf, gf: evaluate(qf, gf, verbose=False)
    qi = pick_frames(q)
    rows = [score('frame model', 'image → image', ev(image_features(v, pooled, qi), image_features(v, pooled, g)))]
    for how in ('mean', 'max'):
        v.temporal = how
        gt = track_features(v, pooled, g, T)
        if how == 'mean': rows.append(score('frame model, mean', 'image → tracklet', ev(image_features(v, pooled, qi), gt)))
        rows.append(score(f'frame model, {how}', 'tracklet → tracklet', ev(track_features(v, pooled, q, T), gt)))
    v.temporal = 'attention'
    t0 = time.time(); last = train_attention(v, pooled, tr[tr.split == 'train'], T, a.attn_iters); t_attn = time.time() - t0
    rows.append(score('frame model + attention (trained alone)', 'tracklet → tracklet', ev(track_features(v, pooled, q, T), track_features(v, pooled, g, T))))
    w = v.attention(pooled[torch.as_tensor(np.stack([r[:T] for r in [g0.row.to_numpy() for _, g0 in g.groupby('tracklet') if len(g0) >= T][:200]]))]).detach()
    attn_stats = dict(iters=a.attn_iters, seconds=round(t_attn, 1), last_loss=round(last, 4), weight_max_mean=round(float(w.max(1).values.mean()), 3) if len(w) else None)
    # costs per epoch: the image model on images, the video model on tracklets of >= T frames
    from reid_nb.data.loaders import reid_dataloaders
    trn = tr[tr.split == 'train'].drop(columns='row')
    cost_fwd = lambda out, y: cross_entropy_ls(out.logits, y, 0.1) + triplet_loss(out.features, y, 0.3)
    with_q = lambda d: pd.concat([d, test.drop(columns='row').iloc[:2].assign(split='query'), test.drop(columns='row').iloc[:2].assign(split='gallery')])
    img_dls = reid_dataloaders(with_q(trn.drop(columns=['tracklet', 'frame'])), size=size, bs=64, num_instances=4)
    vtrn = drop_short_tracklets(trn, T)
    vid_dls = reid_dataloaders(with_q(vtrn), size=size, bs=16, num_instances=4, seq_len=T)
    frame_model = load_reid_model(a.weights)
    costs = {}
    costs['image_epoch_s'], costs['image_iters'] = epoch_cost(frame_model, img_dls.train, a.cost_steps, cost_fwd)
    vm = to_video(load_reid_model(a.weights), 'attention')
    costs['video_epoch_s'], costs['video_iters'] = epoch_cost(vm, vid_dls.train, a.cost_steps, cost_fwd)
    costs.update(video_tracklets=int(vtrn.tracklet.nunique()), video_bs=f"16 tracklets × {T} frames", image_bs="64 images")
    print(costs)
    video_stats = None
    if a.video_epochs > 0:   # whole-model fine-tuning on tracklets (attention), then the same evaluation
        vm = to_video(load_reid_model(a.weights), 'attention')
        vm.attention.load_state_dict(v.attention.state_dict())
        frame_params = [p for n, p in vm.named_parameters() if not n.startswith('attention.')]
        opt = torch.optim.Adam([{'params': frame_params, 'lr': 3.5e-5}, {'params': vm.attention.parameters(), 'lr': 1e-3}])
        n_it = int(round(a.video_epochs * len(vid_dls.train))); t0 = time.time(); it = 0; vm.train()
        while it < n_it:
            for x, y in vid_dls.train:
                loss = cost_fwd(vm(x, y), y); opt.zero_grad(); loss.backward(); opt.step(); it += 1
                if it >= n_it: break
        t_video = time.time() - t0
        vp = frame_pooled(vm, tr.path.tolist(), size)
        vm.eval()
        rows.append(score('video-trained, attention', 'tracklet → tracklet', ev(track_features(vm, vp, q, T), track_features(vm, vp, g, T))))
        video_stats = dict(epochs=a.video_epochs, iters=n_it, seconds=round(t_video, 1), last_loss=round(float(loss.detach()), 4))
    tab = pd.DataFrame(rows)
    print(tab.to_markdown(index=False))
    save_json({**provenance(__file__, argv, threads=a.threads), 'data': proxy_note(df), 'weights': a.weights, 'seq_len': T, 'size': list(size),
               'tracklets': counts, 'rows': rows, 'attention_training': attn_stats, 'video_training': video_stats, 'costs': costs,
               'extract_s': round(t_extract, 1), 'total_s': round(time.time() - t_start, 1)}, a.out)

if __name__ == '__main__': main()
