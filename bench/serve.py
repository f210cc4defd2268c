"""The search service under load, faults and scale (issue 20), three parts, each written to bench/results/serve.json:

- `throughput`: `reid-nb serve` with the Market-1501-proxy model (MobileNetV2 128×64, `bench/train_market.py`) exported
  to ONNX and run by ONNX Runtime, a gallery built from Market crops with `reid-nb embed` + `reid-nb index`; 1, 8 and 32
  client threads on loopback each POST /search one crop at a time for `--seconds`; batching on (max batch 32, 5 ms)
  vs off (max batch 1): requests/s, p50/p95/p99 latency, errors, the mean batch the server ran.
- `gallery`: the real-plus-structured mix of bench/gallery.py (real embeddings: the 10,000 Market-crop embeddings of
  tests/fixtures/market_emb10k.npz, 128-d; distractors from `_common.structured_distractors`) at each of `--sizes`, in the
  faiss `Gallery` (index 'auto') and in a milvus-lite `MilvusGallery` (index 'auto': HNSW above 50,000): build time,
  resident memory added, recall@10 against exact numpy search, single-query p50 (one thread). A size that milvus-lite
  does not finish within `--max-build-s` is recorded as such.
- `durability`: `--trials` rounds of start `reid-nb serve`, adds from 4 threads, SIGKILL at a random moment, restart:
  acknowledged adds missing (or with another crop) afterwards.

Run with one inference thread and `nice`: other work shares the machine, so compare numbers within one run.
    python bench/serve.py [--part throughput,gallery,durability] [--weights W] [--seconds 10] [--sizes 100000,1000000]
"""
import argparse, io, json, os, signal, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path
import numpy as np
from _common import REPO, RESULTS, MARKET_MODEL, market_root, market_found, provenance, save_json, structured_distractors

FIXTURE = REPO/'tests'/'fixtures'/'market_emb10k.npz'

def free_port()->int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def rss_gb()->float:
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS'): return int(l.split()[1]) / 2**20
    return float('nan')

class Server:
    "`reid-nb serve` in a child process on a free loopback port."
    def __init__(self, weights, gallery, *extra, token_file=None):
        import httpx
        self.port = free_port(); self.url = f'http://127.0.0.1:{self.port}'
        env = {**os.environ, 'PYTHONPATH': f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", 'OMP_NUM_THREADS': '1'}
        cmd = [sys.executable, '-m', 'reid_nb.cli', 'serve', '--weights', str(weights), '--gallery', str(gallery), '--port', str(self.port), *extra]
        if token_file: cmd += ['--token-file', str(token_file)]
        self.p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.time()
        while time.time() - t0 < 600:
            if self.p.poll() is not None: raise SystemExit(f'the server exited: {self.p.stdout.read()}')
            try:
                if httpx.get(f'{self.url}/health', timeout=2).status_code == 200: self.start_s = time.time() - t0; return
            except httpx.HTTPError: time.sleep(0.2)
        self.kill(); raise SystemExit('the server did not start in 600 s')
    def kill(self): self.p.send_signal(signal.SIGKILL); self.p.wait(30)
    def stop(self): self.p.send_signal(signal.SIGINT); self.p.wait(60)

def jpeg(path)->bytes: return Path(path).read_bytes()

def market_crops(root, n:int, seed:int=0)->list:
    from reid_nb.data.datasets import market1501
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        df = market1501(root)
    df = df[df.split == 'train'].sort_values('path').reset_index(drop=True)
    return df.iloc[np.sort(np.random.default_rng(seed).choice(len(df), n, replace=False))]

def load_clients(url:str, crops:list, clients:int, seconds:float, warm:float=1.0)->tuple:
    "`clients` threads POST /search one crop at a time for `seconds` (after `warm`): (latencies in s of the timed part, errors)."
    import httpx
    lat, errors, stop_at, lock = [], [0], time.time() + warm + seconds, threading.Lock()
    t_start = time.time() + warm
    def client(i):
        rng = np.random.default_rng(i)
        with httpx.Client(timeout=60) as c:
            while (now := time.time()) < stop_at:
                b = crops[rng.integers(len(crops))]
                try: ok = c.post(f'{url}/search', files=[('image', ('q.jpg', b, 'image/jpeg'))], data={'k': 10}).status_code == 200
                except httpx.HTTPError: ok = False
                dt = time.time() - now
                with lock:
                    if now >= t_start: lat.append(dt); errors[0] += not ok
    th = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in th: t.start()
    for t in th: t.join()
    return lat, errors[0]

def part_throughput(a, work:Path)->dict:
    """Both servers run side by side (the idle one costs nothing); each client count is measured on, off, off, on
    (`--seconds` / 2 each), so a change in the machine's other load falls on both settings alike."""
    import httpx
    from reid_nb.export import export_onnx
    from reid_nb.cli import embed_images, build_gallery
    onnx = work/'market.onnx'
    export_onnx(a.weights, onnx)
    df = market_crops(a.root, a.gallery_crops + 200)
    gal_df, q_df = df.iloc[:a.gallery_crops], df.iloc[a.gallery_crops:]
    gal_df[['path', 'pid', 'camid']].to_csv(work/'gallery.csv', index=False)
    embed_images(str(work/'gallery.csv'), str(onnx), str(work/'gallery.npz'))
    build_gallery(str(work/'gallery.npz'), str(work/'gallery'))
    queries = [jpeg(p) for p in q_df.path]
    import shutil
    shutil.copytree(work/'gallery', work/'gallery_off')
    servers, rows = {}, []
    try:
        servers['on'] = Server(onnx, work/'gallery', '--threads', str(a.threads), '--max-batch', '32', '--max-wait-ms', '5')
        servers['off'] = Server(onnx, work/'gallery_off', '--threads', str(a.threads), '--max-batch', '1')   # (a failed start stops the first too)
        for n in (1, 8, 32):
            got = {k: ([], 0) for k in servers}
            for k in ('on', 'off', 'off', 'on'):
                lat, err = load_clients(servers[k].url, queries, n, a.seconds / 2)
                got[k] = (got[k][0] + lat, got[k][1] + err)
            for k, (lat, err) in got.items():
                ms = np.array(lat) * 1000
                h = httpx.get(f'{servers[k].url}/health').json()
                r = dict(batching=k, clients=n, requests=len(lat), rps=len(lat) / a.seconds, p50_ms=float(np.percentile(ms, 50)),
                         p95_ms=float(np.percentile(ms, 95)), p99_ms=float(np.percentile(ms, 99)), errors=int(err), mean_batch=h['batching']['mean_batch'])
                rows.append(r)
                print(f"batching {k:>3}, {n:>2} clients: {r['rps']:6.1f} req/s  p50 {r['p50_ms']:6.1f}  p95 {r['p95_ms']:6.1f}  p99 {r['p99_ms']:6.1f} ms  "
                      f"errors {r['errors']}  (mean batch so far {r['mean_batch']})", flush=True)
    finally:
        for s_ in servers.values(): s_.stop()
    return dict(model=f"{Path(a.weights).name} (MobileNetV2 128x64, Market-1501 proxy) exported to ONNX, ONNX Runtime fp32, {a.threads} inference thread(s)",
                gallery=f"{a.gallery_crops} Market-1501 crops (reid-nb embed + reid-nb index, faiss flat)", seconds_per_point=a.seconds,
                forward_ms=forward_cost(onnx, a.threads), rows=rows)

def forward_cost(onnx, threads:int)->dict:
    "ms per image of the bare ONNX Runtime forward pass at batch 1, 8 and 32 (what batching can save at most)."
    import torch
    from reid_nb.embed import Embedder
    e = Embedder(onnx, threads=threads, batch_size=64, progress=False)
    out = {}
    for b in (1, 8, 32):
        x = torch.rand(b, 3, *e.size); e.embed(x)
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < 3: e.embed(x); n += 1
        out[f'batch_{b}'] = (time.perf_counter() - t) / n / b * 1000
    print('forward ms per image: ' + ', '.join(f'{k} {v:.1f}' for k, v in out.items()), flush=True)
    return out

def part_gallery(a, work:Path, saved=lambda part: None)->dict:
    import faiss
    from reid_nb.gallery import Gallery
    from reid_nb.milvus import MilvusGallery
    faiss.omp_set_num_threads(1)
    d = np.load(FIXTURE)
    real = d['feats'].astype(np.float32)
    queries, real = real[:a.queries], real[a.queries:]
    c = real - real.mean(0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    basis, scale = vt[:64], (s[:64] / np.sqrt(len(real))).astype(np.float32)
    rows = []
    for n in a.sizes:
        x = np.concatenate([real, structured_distractors(real, n - len(real), 0, basis, scale)]) if n > len(real) else real[:n]
        exact = np.zeros((len(queries), 10), np.int64)
        for i in range(len(queries)): exact[i] = np.argsort(-(x @ queries[i]))[:10]
        def measure(g, name, t_build, mem, nq):
            ids = g.search(queries[:nq], 10).ids
            recall = float(np.mean([len(set(r) & set(t)) / 10 for r, t in zip(ids, exact)]))
            ts = []
            for q in queries[:min(nq, 100)]:
                t = time.perf_counter(); g.search(q[None], 10); ts.append(time.perf_counter() - t)
            row = dict(backend=name, n=n, dim=x.shape[1], index=g.index_kind, build_s=t_build, rss_added_gb=mem, recall_at_10=recall, p50_ms=float(np.median(ts) * 1000),
                       queries=nq)
            print(f"{name:>11} {n:>9,}: {g.index_kind:>5}, build {t_build:7.1f} s, +{mem:5.2f} GB, recall@10 {recall:.4f}, single query p50 {row['p50_ms']:.2f} ms", flush=True)
            rows.append(row); saved(dict(data=note, rows=rows))
        note = (f"{len(real)} real Market-proxy embeddings (tests/fixtures/market_emb10k.npz, 128-d) + structured distractors; "
                f"up to {len(queries)} real held-out queries (fewer for milvus-lite, whose searches take seconds); recall@10 against exact numpy search; single queries on one thread")
        m0 = rss_gb(); t = time.time()
        g = Gallery(x.shape[1]); g.add(x)
        measure(g, 'faiss', time.time() - t, rss_gb() - m0, len(queries)); del g
        m0 = rss_gb(); t = time.time()
        mg = MilvusGallery(work/f'g{n}.db', x.shape[1], index='auto', expected_size=n)
        done = 0
        for s0 in range(0, n, 50_000):
            mg.add(x[s0:s0 + 50_000]); done = s0 + 50_000
            if time.time() - t > a.max_build_s: break
        if done < n:
            print(f"milvus-lite {n:>9,}: {done:,} vectors inserted in {time.time() - t:.0f} s (> --max-build-s {a.max_build_s}): stopped", flush=True)
            ts = []
            for q in queries[:10]:
                t1 = time.perf_counter(); mg.search(q[None], 10); ts.append(time.perf_counter() - t1)
            rows.append(dict(backend='milvus-lite', n=n, index=mg.index_kind, inserted=min(done, n), build_s=time.time() - t, finished=False,
                             p50_ms=float(np.median(ts) * 1000), queries=10))
            saved(dict(data=note, rows=rows)); mg.close(); break
        mg.save()
        measure(mg, 'milvus-lite', time.time() - t, rss_gb() - m0, a.milvus_queries); mg.close()
    return dict(data=note, rows=rows)

def part_durability(a, work:Path)->dict:
    import httpx
    from reid_nb.export import export_onnx
    onnx = work/'market.onnx'
    if not onnx.exists(): export_onnx(a.weights, onnx)
    crops = [jpeg(p) for p in market_crops(a.root, 2000, seed=1).path]
    tok = work/'token'; tok.write_text('bench-token-0123456789abcdef')
    auth = {'Authorization': 'Bearer bench-token-0123456789abcdef'}
    acked, lost, rng = {}, 0, np.random.default_rng(0)
    nxt = [0]; lock = threading.Lock()
    for trial in range(a.trials):
        srv = Server(onnx, work/'durable', '--snapshot-every', '50', token_file=tok)
        stop = [False]
        def client():
            with httpx.Client(timeout=30) as c:
                while not stop[0]:
                    with lock: ci = nxt[0] % len(crops); nxt[0] += 1
                    try: r = c.post(f'{srv.url}/gallery', files=[('image', ('c.jpg', crops[ci], 'image/jpeg'))], headers=auth)
                    except httpx.HTTPError: return
                    if r.status_code == 200:
                        with lock: acked[r.json()['ids'][0]] = ci
        th = [threading.Thread(target=client) for _ in range(4)]
        for t in th: t.start()
        time.sleep(rng.uniform(0.3, 3.0))
        srv.kill(); stop[0] = True
        for t in th: t.join(60)
    srv = Server(onnx, work/'durable', token_file=tok)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        size = c.get('/health').json()['gallery']['size']
        for i, ci in acked.items():
            r = c.get(f'/gallery/{i}/image')
            lost += r.status_code != 200 or r.content != crops[ci]
    srv.stop()
    print(f"durability: {a.trials} kill -9 trials, {len(acked)} acknowledged adds, {lost} lost; gallery size after restart {size}", flush=True)
    return dict(trials=a.trials, acknowledged=len(acked), lost=int(lost), size_after=size)

def table(rows:list, cols:list):
    "Print rows as a markdown table."
    fmt = lambda v: f'{v:.4g}' if isinstance(v, float) else str(v)
    print('| ' + ' | '.join(cols) + ' |'); print('|' + ' --- |' * len(cols))
    for r in rows: print('| ' + ' | '.join(fmt(r.get(c, '')) for c in cols) + ' |')

COLUMNS = dict(throughput=['batching', 'clients', 'rps', 'p50_ms', 'p95_ms', 'p99_ms', 'errors', 'mean_batch'],
               gallery=['backend', 'n', 'index', 'build_s', 'rss_added_gb', 'recall_at_10', 'p50_ms', 'inserted'],
               durability=['trials', 'acknowledged', 'lost', 'size_after'])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--part', default='throughput,gallery,durability')
    p.add_argument('--weights', default=str(MARKET_MODEL if MARKET_MODEL.is_file() else MARKET_MODEL.with_name('last.pth')))
    p.add_argument('--root', default=None, help='Market-1501 root (default: _common.market_root)')
    p.add_argument('--threads', type=int, default=1, help='ONNX Runtime threads of the server')
    p.add_argument('--seconds', type=float, default=10.0)
    p.add_argument('--gallery-crops', type=int, default=2000)
    p.add_argument('--sizes', default='100000,1000000')
    p.add_argument('--queries', type=int, default=200)
    p.add_argument('--max-build-s', type=float, default=1200)
    p.add_argument('--trials', type=int, default=20)
    p.add_argument('--milvus-queries', type=int, default=30, help='queries for milvus-lite recall / latency (each takes seconds at scale)')
    p.add_argument('--out', default=str(RESULTS/'serve.json'))
    a = p.parse_args(argv)
    a.root = market_root(a.root); a.sizes = [int(s) for s in a.sizes.split(',')]
    parts = a.part.split(',')
    if ('throughput' in parts or 'durability' in parts) and not market_found(a.root): return
    out = Path(a.out)
    res = json.loads(out.read_text()) if out.exists() else {}
    res.update(provenance(__file__, argv, threads=a.threads))
    work = Path(tempfile.mkdtemp(prefix='bench_serve_'))
    for part in parts:
        def saved(partial, part=part): res[part] = partial; save_json(res, out)   # rows as they come (a long run keeps what it measured)
        res[part] = part_gallery(a, work, saved) if part == 'gallery' else dict(throughput=part_throughput, durability=part_durability)[part](a, work)
        save_json(res, out)
    for part in parts:
        print(f"\n{part}:"); table(res[part]['rows'] if 'rows' in res[part] else [res[part]], COLUMNS[part])
    print(f"wrote {out}")

if __name__ == '__main__': main()
