"""Speed and memory of reid_nb.rerank on synthetic features shaped like real benchmarks.

    python bench/rerank.py                  # Market-1501 + MSMT17 shapes
    python bench/rerank.py --cases market --reference half

Each measurement runs in its own subprocess, so its peak RSS (resident memory, the whole Python process
including torch and the features) is its own. The reference is FastReID 1.4.0's `re_ranking` (NumPy, from
the three distance matrices, which it is given; their computation is included in its time), run at a
fraction of the size (`--reference half`: half the queries and gallery, N/2) and extrapolated as N²
(its time and memory are dominated by N×N arrays and loops over N rows of N) — or at full size
(`--reference full`, ≈190 s and ≈9 GB here). At the reference's size the table also gives
reid_nb's time there and the largest difference between the two results.
"""
import argparse, json, os, resource, subprocess, sys, time
from _common import DIM, SHAPES, synthetic_features

def case_shape(case:str, f:int=1)->tuple:
    "(queries, gallery, dim, identities, cameras) of a benchmark, queries and gallery divided by `f`."
    s = SHAPES[case]
    return (s['nq'] // f, s['ng'] // f, DIM, s['ids'], s['cams'])

def worker(method, nq, ng, dim, n_ids, n_cams, threads, save, compare):
    import numpy as np, torch
    torch.set_num_threads(threads)
    (qf, _, _), (gf, _, _) = synthetic_features(nq, ng, n_ids, n_cams, dim, noise=1.0, cam_shift=0.5)
    extra = {}
    t = time.perf_counter()
    if method == 'rerank_features':
        from reid_nb.rerank import rerank_features
        out = rerank_features(qf, gf, 'cosine').numpy()
    elif method == 'query_expansion':
        from reid_nb.rerank import query_expansion
        out = query_expansion(qf, gf)[0].numpy()
    elif method == 'fastreid':
        from reid_nb.test_utils import fastreid_compat
        with fastreid_compat():   # FastReID 1.4 predates Python 3.10
            from fastreid.evaluation.rerank import re_ranking
        from reid_nb.metrics import compute_distance
        out = re_ranking(*[compute_distance(a, b, 'cosine').numpy() for a, b in [(qf, gf), (qf, qf), (gf, gf)]])
    else: raise ValueError(f"unknown method {method!r}")
    extra['seconds'] = time.perf_counter() - t
    if save: np.save(save, out)
    if compare and os.path.exists(compare):
        d = np.abs(out - np.load(compare)) > 1e-4
        extra.update(max_abs_diff=float(np.abs(out - np.load(compare)).max()), n_diff=int(d.sum()), n_entries=int(d.size),
                     n_diff_cols=int(d.any(0).sum()))
    extra['peak_rss_gb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(extra))

def run(method, shape, threads, save='', compare=''):
    cmd = [sys.executable, __file__, '--worker', method, '--shape', ','.join(map(str, shape)),
           '--threads', str(threads), '--save', save, '--compare', compare]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode: raise RuntimeError(f"{method} {shape} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cases', default='market,msmt17', help=f"comma-separated, of {', '.join(SHAPES)} (toy: a quick check)")
    p.add_argument('--reference', default='half', choices=['half', 'full', 'none'])
    p.add_argument('--qe', action='store_true', help='also time query_expansion at Market size')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--worker', default=None); p.add_argument('--shape', default=None)
    p.add_argument('--save', default=''); p.add_argument('--compare', default='')
    a = p.parse_args()
    if a.worker: return worker(a.worker, *map(int, a.shape.split(',')), a.threads, a.save, a.compare)

    rows = []
    def add(what, shape, r, note=''):
        rows.append((what, f"{shape[0]:,} × {shape[1]:,} × {shape[2]}", f"{r['seconds']:.1f}", f"{r['peak_rss_gb']:.2f}", note))
        print(rows[-1], flush=True)
    ref_time = {}
    if a.reference != 'none' and 'market' in a.cases:
        f = 1 if a.reference == 'full' else 2
        ref_shape = case_shape('market', f)
        path = f'/tmp/reid_nb_bench_rerank_ref_{os.getpid()}.npy'
        try:
            r = run('fastreid', ref_shape, a.threads, save=path)
            add('FastReID 1.4.0 re_ranking', ref_shape, r, 'measured')
            ref_time = {'seconds': r['seconds'] * f * f, 'peak_rss_gb': r['peak_rss_gb'] * f * f}
            if f != 1: add('FastReID 1.4.0 re_ranking', case_shape('market'), ref_time, f'extrapolated ×{f*f} (N²)')
            r = run('rerank_features', ref_shape, a.threads, compare=path)
            add('reid_nb rerank_features', ref_shape, r, f"vs FastReID: {r['n_diff']:,} of {r['n_entries']:,} entries differ by > 1e-4 "
                f"(in {r['n_diff_cols']} gallery columns; max {r['max_abs_diff']:.1e})")
        finally:
            if os.path.exists(path): os.remove(path)
    for case in a.cases.split(','):
        r = run('rerank_features', case_shape(case), a.threads)
        note = f"{ref_time['seconds'] / r['seconds']:.0f}× faster than the reference" if case == 'market' and ref_time else ''
        add('reid_nb rerank_features', case_shape(case), r, note)
    if a.qe: add('reid_nb query_expansion', case_shape('market'), run('query_expansion', case_shape('market'), a.threads))
    print(f"\nk-reciprocal re-ranking (k1=20, k2=6, λ=0.3, cosine) on synthetic features, {a.threads} threads, "
          f"{os.cpu_count()} CPUs; peak RSS of the whole process\n")
    print('| method | queries × gallery × dim | seconds | peak RSS (GB) | note |\n|---|---|---:|---:|---|')
    for r in rows: print('| ' + ' | '.join(r) + ' |')

if __name__ == '__main__': main()
