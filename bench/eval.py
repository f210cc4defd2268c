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
  The float32 matrix alone is q*g*4 bytes (MSMT17: 3.83 GB), so with the features (0.77 GB) one process
  cannot stay under 4 GB on this path; its own use beyond the matrix is what the table shows.
- `reid_nb evaluate()`: `evaluate(q, g)` on features: distances block by block, CMC/mAP/mINP, ROC
  (TPR@FPR), histograms and top-10 lists; never holds the whole matrix.
- `... 2 ranks`: the same split over 2 processes started together, each with every feature and half of the
  queries; "peak RSS" is the larger of the two ranks' peaks, "total s" the slower rank's time.
  `distance+evaluate_rank, 2 ranks`: each rank builds only its half of the matrix (what a DDP rank does);
  the metrics are merged from the ranks' per-query AP/INP/first-match counts.
  `evaluate_distributed, 2 ranks`: `reid_nb.distributed.evaluate_distributed` over a gloo process group.

Besides the table, the figures go to bench/results/eval.json (--out), after the provenance block of bench/_common.py.
- `FastReID evaluate_rank (Cython)`: FastReID 1.4.0's compiled `evaluate_cy` alone, on the matrix
  (distance time excluded), when `--fastreid-cy DIR` points at a folder with its `rank_cy*.so`
  (compile FastReID's rank_cylib there with cython, outside the repo). `--fastreid-py` adds its
  Python path (slow). FastReID is a reference only and is never imported by reid_nb.
"""
import argparse, json, os, resource, subprocess, sys, time
from _common import RESULTS, SHAPES, synthetic_features, provenance, save_json

def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024

def worker(case, method, cy_dir, rank=0, world=1):
    import numpy as np, torch
    torch.set_num_threads(2 if world == 1 else 1)
    from reid_nb.metrics import compute_distance, evaluate_rank
    from reid_nb.evaluate import Features, evaluate
    (qf, qp, qc), (gf, gp, gc) = synthetic_features(**SHAPES[case])
    out = dict(case=case, method=method)
    if method == 'reid_nb distance+evaluate_rank, 2 ranks':
        a, b = rank * len(qf) // world, (rank + 1) * len(qf) // world   # reid_nb.distributed.shard_range (not imported: it brings fastai)
        out['rss_before'] = rss_mb()
        t = time.perf_counter(); dist = compute_distance(qf[a:b], gf, 'cosine'); t1 = time.perf_counter()
        r = evaluate_rank(dist, qp[a:b], gp, qc[a:b], gc, max_rank=50); t2 = time.perf_counter()
        out.update(dist_s=t1 - t, rank_s=t2 - t1, total_s=t2 - t, sum_ap=float(r.all_AP.double().sum()), sum_inp=float(r.all_INP.double().sum()),
                   n_valid=r.num_valid, n_r1=int(((r.first_match == 1) & r.valid).sum()))
    elif method == 'reid_nb evaluate_distributed, 2 ranks':
        import torch.distributed as dist
        from reid_nb.distributed import evaluate_distributed
        dist.init_process_group('gloo', rank=rank, world_size=world)
        q, g = Features(qf, qp, qc), Features(gf, gp, gc)
        out['rss_before'] = rss_mb()
        t = time.perf_counter(); r = evaluate_distributed(q, g, 'cosine', verbose=False); t2 = time.perf_counter()
        out.update(total_s=t2 - t, mAP=r.mAP, r1=r.cmc[0].item(), mINP=r.mINP, tpr=r.tpr_at_fpr[1e-2])
        dist.destroy_process_group()
    elif method == 'reid_nb distance+evaluate_rank':
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
            import warnings
            from reid_nb.test_utils import fastreid_compat
            warnings.simplefilter('ignore')
            with fastreid_compat():   # FastReID 1.4 predates Python 3.10
                from fastreid.evaluation.rank import evaluate_rank as fr
            fn = lambda: fr(dist, qp, gp, qc, gc, 50, use_cython=False)
        t = time.perf_counter(); cmc, aps, inps = fn(); t2 = time.perf_counter()
        out.update(rank_s=t2 - t, total_s=t2 - t, mAP=float(np.mean(aps)), r1=float(cmc[0]), mINP=float(np.mean(inps)))
    out['peak_rss'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print('RESULT ' + json.dumps(out))

METHODS = ('reid_nb distance+evaluate_rank', 'reid_nb evaluate()', 'reid_nb distance+evaluate_rank, 2 ranks',
           'reid_nb evaluate_distributed, 2 ranks')

def _free_port():
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _merge_ranks(rs):
    "One row from the ranks' rows: the larger peak, the slower time; metrics merged from per-query sums when the ranks split them."
    if len(rs) == 1: return rs[0]
    out = dict(rs[0])
    for k in ('peak_rss', 'rss_before', 'total_s', 'dist_s', 'rank_s'):
        if k in out: out[k] = max(r[k] for r in rs)
    if 'sum_ap' in out:
        n = sum(r['n_valid'] for r in rs)
        out.update(mAP=sum(r['sum_ap'] for r in rs) / n, mINP=sum(r['sum_inp'] for r in rs) / n, r1=sum(r['n_r1'] for r in rs) / n)
        for k in ('sum_ap', 'sum_inp', 'n_valid', 'n_r1'): out.pop(k)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cases', nargs='+', default=['market', 'msmt17'], choices=list(SHAPES), help="'toy': a quick check that every row runs")
    ap.add_argument('--fastreid-cy', default=None, help="folder holding FastReID's compiled rank_cy*.so")
    ap.add_argument('--fastreid-py', action='store_true', help="also time FastReID's Python path (Market only; slow)")
    ap.add_argument('--repeat', type=int, default=1, help='runs per row; the table shows the fastest')
    ap.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS), help='reid_nb rows to run')
    ap.add_argument('--out', default=str(RESULTS/'eval.json'))
    ap.add_argument('--worker', nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(a.worker[0], a.worker[1], a.fastreid_cy, int(a.worker[2]), int(a.worker[3]))
    runs = []
    for case in a.cases:
        methods = list(a.methods)
        if case == 'market' and a.fastreid_cy: methods.append('FastReID evaluate_rank (Cython)')
        if case == 'market' and a.fastreid_py: methods.append('FastReID evaluate_rank (Python)')
        for m in methods: runs.append((case, m))
    rows = []
    for case, m in runs:
        best = None
        for _ in range(a.repeat):
            world = 2 if '2 ranks' in m else 1
            env = {**os.environ, 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(_free_port())}
            ps = [subprocess.Popen([sys.executable, __file__, '--worker', case, m, str(r), str(world)] +
                                   (['--fastreid-cy', a.fastreid_cy] if a.fastreid_cy else []),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for r in range(world)]
            outs = [p.communicate() for p in ps]
            res = [[json.loads(l[7:]) for l in o.splitlines() if l.startswith('RESULT ')] for o, _ in outs]
            if any(p.returncode for p in ps) or not all(res):
                for o, e in outs: print(o, e, file=sys.stderr)
                raise SystemExit(f"{case} / {m} failed")
            r = _merge_ranks([x[-1] for x in res])
            if best is None or r['total_s'] < best['total_s']: best = r
        rows.append(best)
        print(f"done: {case:7s} {m:40s} {best['total_s']:.2f} s", file=sys.stderr, flush=True)
    f = lambda r, k, fmt: format(r[k], fmt) if k in r else '-'
    hdr = f"| {'case':8s} | {'method':40s} | {'distance s':>10s} | {'rank s':>7s} | {'total s':>7s} | {'RSS before MB':>13s} | {'peak RSS MB':>11s} | {'R1':>6s} | {'mAP':>6s} | {'mINP':>6s} |"
    print(hdr); print('|' + '|'.join('-' * (len(c)) for c in hdr.split('|')[1:-1]) + '|')
    for r in rows:
        print(f"| {r['case']:8s} | {r['method']:40s} | {f(r, 'dist_s', '10.2f'):>10s} | {f(r, 'rank_s', '7.2f'):>7s} | {r['total_s']:7.2f} | "
              f"{r['rss_before']:13.0f} | {r['peak_rss']:11.0f} | {r['r1']:6.2%} | {r['mAP']:6.2%} | {r['mINP']:6.2%} |")
    doc = dict(**provenance(__file__, threads=2), notes='torch threads: 2, 1 per rank in the 2-rank rows',
               load_average=os.getloadavg()[0], rows=rows)
    print(f"\n{doc['hardware']} (1 per rank in the 2-rank rows), load average at the end: {doc['load_average']:.2f}")
    save_json(doc, a.out)

if __name__ == '__main__':
    main()
