"""Make tests/fixtures/market_emb10k.npz: 10,000 real re-id embeddings for the tests that compare gallery backends
(tests/test_milvus.py: Milvus against faiss exact search).

How it is made: 10,000 Market-1501 crops (bounding_box_train, a seed-0 sample without replacement) embedded at
128×64 by the Market-1501-proxy model (MobileNetV2 that bench/train_market.py trains; default ../market_run/checkpoints/
best.pth), no flip; the 1,280-d features projected on their 128 principal directions (PCA fitted on these 10,000),
L2-normalised and stored as float16 (2.5 MB) with each crop's pid and camid (from the Market file name). The crops
and the model stay outside the repository; only these numbers are committed.

    python tools/make_embeddings_fixture.py [--weights W] [--root MARKET_ROOT] [--n 10000] [--dim 128]
"""
import argparse, datetime, json, sys, time
from pathlib import Path
import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO/'tests'/'fixtures'/'market_emb10k.npz'

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--weights', default=str(REPO.parent/'market_run'/'checkpoints'/'best.pth'))
    p.add_argument('--root', default=str(REPO.parent/'shared'/'data'/'market1501_train'))
    p.add_argument('--n', type=int, default=10_000)
    p.add_argument('--dim', type=int, default=128)
    p.add_argument('--out', default=str(OUT))
    a = p.parse_args(argv)
    import torch
    from reid_nb.data.datasets import market1501
    from reid_nb.embed import Embedder
    torch.set_num_threads(1)
    df = market1501(a.root)
    df = df[df.split == 'train'].sort_values('path').reset_index(drop=True)
    df = df.iloc[np.sort(np.random.default_rng(0).choice(len(df), a.n, replace=False))]
    t0 = time.time()
    emb = Embedder(a.weights, flip=False, batch_size=128, num_workers=0)
    f = emb(df.path.tolist()).astype(np.float64)
    mu = f.mean(0)
    _, _, vt = np.linalg.svd(f - mu, full_matrices=False)
    z = (f - mu) @ vt[:a.dim].T
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    ck = torch.load(a.weights, map_location='cpu', weights_only=False)
    notes = dict(made_by='tools/make_embeddings_fixture.py', command=' '.join(['python', 'tools/make_embeddings_fixture.py', *(argv or sys.argv[1:])]),
                 date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                 weights=Path(a.weights).name, epoch=ck.get('epoch'), arch=ck.get('arch'), size_test=list(emb.size), flip=False,
                 crops=f"{a.n} of Market-1501 bounding_box_train (seed-0 sample)", pca=f"{f.shape[1]} -> {a.dim} dims, fitted on these crops",
                 dtype='float16, L2-normalised after the PCA')
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, feats=z.astype(np.float16), pids=df.pid.to_numpy(np.int64), camids=df.camid.to_numpy(np.int64), notes=json.dumps(notes))
    print(f"{out}: {a.n} × {a.dim} float16 ({out.stat().st_size / 1e6:.1f} MB), {df.pid.nunique()} identities, {time.time() - t0:.0f} s")

if __name__ == '__main__': main()
