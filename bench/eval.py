"""Speed and peak memory of reid_nb's evaluation on synthetic features with real benchmark shapes.

    python bench/eval.py                   # Market-1501 and MSMT17
    python bench/eval.py --cases market --fastreid-cy /tmp/frcy        # with FastReID's compiled evaluate_rank

Shapes: Market-1501 3,368 queries x 15,913 gallery, 751 ids, 6 cameras; MSMT17 11,659 x 82,161,
3,060 ids, 15 cameras; 2,048-d features = identity centre + Gaussian noise, L2-normalised, so the
ranking looks like a trained model's; a per-camera shift adds same-camera impostors (the table shows the resulting mAP). Each row runs in its own
subprocess; "peak RSS" is that process's high-water mark (ru_maxrss), "RSS before" its resident
size once the features exist, so the difference is what the evaluation itself needed.

Rows:
- `reid_nb distance+evaluate_rank`: `compute_distance` (full q x g matrix) then `evaluate_rank` on it.
- `reid_nb evaluate()`: `evaluate(q, g)` on features: distances block by block, CMC/mAP/mINP, ROC
  (TPR@FPR), histograms and top-10 lists; never holds the whole matrix.
- `FastReID evaluate_rank (Cython)`: FastReID 1.4.0's compiled `evaluate_cy` alone, on the matrix
  (distance time excluded), when `--fastreid-cy DIR` points at a folder with its `rank_cy*.so`
  (compile FastReID's rank_cylib there with cython, outside the repo). `--fastreid-py` adds its
  Python path (slow). FastReID is a reference only and is never imported by reid_nb.
"""
import argparse, json, os, resource, subprocess, sys, time

CASES = {'market': dict(nq=3368, ng=15913, ids=751, cams=6), 'msmt17': dict(nq=11659, ng=82161, ids=3060, cams=15)}
DIM, NOISE, CAMBIAS = 2048, 2.8, 0.6

def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024

def make_features(nq, ng, ids, cams, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(ids, DIM, generator=g)
    cam_dirs = torch.randn(cams, DIM, generator=g)     # a per-camera shift: same-camera impostors come close
    def feats(n):
        pids = torch.randint(0, ids, (n,), generator=g)
        camids = torch.randint(0, cams, (n,), generator=g)
        f = torch.empty(n, DIM)
        for i in range(0, n, 4096):                    # in blocks: no big temporaries
            p = pids[i:i+4096]
            f[i:i+4096] = torch.nn.functional.normalize(
                centres[p] + CAMBIAS * cam_dirs[camids[i:i+4096]] + NOISE * torch.randn(len(p), DIM, generator=g), dim=1)
        return f, pids, camids
    return feats(nq), feats(ng)

def worker(case, method, cy_dir):
    import numpy as np, torch
    torch.set_num_threads(2)
    from reid_nb.metrics import compute_distance, evaluate_rank
    from reid_nb.evaluate import Features, evaluate
    (qf, qp, qc), (gf, gp, gc) = make_features(**CASES[case])
    out = dict(case=case, method=method)
    if method == 'reid_nb distance+evaluate_rank':
        out['rss_before'] = rss_mb()
        t = time.perf_counter(); dist = compute_distance(qf, gf, 'cosine'); t1 = time.perf_counter()
        r = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50); t2 = time.perf_counter()
        out.update(dist_s=t1 - t, rank_s=t2 - t1, total_s=t2 - t, mAP=r.mAP, r1=r.cmc[0].item(), mINP=r.mINP)
    elif method == 'reid_nb evaluate()':
        q, g = Features(qf, qp, qc), Features(gf, gp, gc)
        out['rss_before'] = rss_mb()
        t = time.perf_counter(); r = evaluate(q, g, 'cosine', verbose=False); t2 = time.perf_counter()
        out.update(total_s=t2 - t, mAP=r.mAP, r1=r.cmc[0].item(), mINP=r.mINP, tpr=r.tpr_at_fpr[1e-2])
    elif method.startswith('FastReID'):
        dist = compute_distance(qf, gf, 'cosine').numpy()
        qp, gp, qc, gc = (x.numpy() for x in (qp, gp, qc, gc))
        out['rss_before'] = rss_mb()
        if 'Cython' in method:
            sys.path.insert(0, cy_dir)
            from rank_cy import evaluate_cy
            fn = lambda: evaluate_cy(dist, qp, gp, qc, gc, 50, False)
        else:
            import collections, collections.abc, warnings
            collections.Mapping = collections.abc.Mapping
            warnings.simplefilter('ignore')
            from fastreid.evaluation.rank import evaluate_rank as fr
            fn = lambda: fr(dist, qp, gp, qc, gc, 50, use_cython=False)
        t = time.perf_counter(); cmc, aps, inps = fn(); t2 = time.perf_counter()
        out.update(rank_s=t2 - t, total_s=t2 - t, mAP=float(np.mean(aps)), r1=float(cmc[0]), mINP=float(np.mean(inps)))
    out['peak_rss'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print('RESULT ' + json.dumps(out))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cases', nargs='+', default=['market', 'msmt17'], choices=list(CASES))
    ap.add_argument('--fastreid-cy', default=None, help="folder holding FastReID's compiled rank_cy*.so")
    ap.add_argument('--fastreid-py', action='store_true', help="also time FastReID's Python path (Market only; slow)")
    ap.add_argument('--repeat', type=int, default=1, help='runs per row; the table shows the fastest')
    ap.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(*a.worker, a.fastreid_cy)
    runs = []
    for case in a.cases:
        methods = ['reid_nb distance+evaluate_rank', 'reid_nb evaluate()']
        if case == 'market' and a.fastreid_cy: methods.append('FastReID evaluate_rank (Cython)')
        if case == 'market' and a.fastreid_py: methods.append('FastReID evaluate_rank (Python)')
        for m in methods: runs.append((case, m))
    rows = []
    for case, m in runs:
        best = None
        for _ in range(a.repeat):
            p = subprocess.run([sys.executable, __file__, '--worker', case, m] + (['--fastreid-cy', a.fastreid_cy] if a.fastreid_cy else []),
                               capture_output=True, text=True)
            res = [l for l in p.stdout.splitlines() if l.startswith('RESULT ')]
            if p.returncode or not res: print(p.stdout, p.stderr, file=sys.stderr); raise SystemExit(f"{case} / {m} failed")
            r = json.loads(res[-1][7:])
            if best is None or r['total_s'] < best['total_s']: best = r
        rows.append(best)
        print(f"done: {case:7s} {m:34s} {best['total_s']:.2f} s", file=sys.stderr, flush=True)
    f = lambda r, k, fmt: format(r[k], fmt) if k in r else '-'
    hdr = f"| {'case':8s} | {'method':34s} | {'distance s':>10s} | {'rank s':>7s} | {'total s':>7s} | {'RSS before MB':>13s} | {'peak RSS MB':>11s} | {'R1':>6s} | {'mAP':>6s} | {'mINP':>6s} |"
    print(hdr); print('|' + '|'.join('-' * (len(c)) for c in hdr.split('|')[1:-1]) + '|')
    for r in rows:
        print(f"| {r['case']:8s} | {r['method']:34s} | {f(r, 'dist_s', '10.2f'):>10s} | {f(r, 'rank_s', '7.2f'):>7s} | {r['total_s']:7.2f} | "
              f"{r['rss_before']:13.0f} | {r['peak_rss']:11.0f} | {r['r1']:6.2%} | {r['mAP']:6.2%} | {r['mINP']:6.2%} |")
    print(f"\n{os.cpu_count()} CPUs, torch threads 2, load average at the end: {os.getloadavg()[0]:.2f}")

if __name__ == '__main__':
    main()
