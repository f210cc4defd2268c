#!/usr/bin/env python
"""Knowledge distillation on real data: a cheaper student alone vs the same student distilled from a trained teacher.

Market-1501 proxy split (the 376 train identities of `_common.market_proxy`: 375 test identities, split seed 0,
Market's protocol). The teacher is a trained reid_nb checkpoint (default: the MobileNetV2 BoT model of
`bench/train_market.py`, 128x64). The student is MobileNetV2 (ImageNet weights) at 64x32: every training batch reaches
the teacher at the loader's 128x64 and the student as a downsampled copy (`DistillCallback(student_size=...)`; the
baseline gets the same copy through `ResizeBatch`), and the student is evaluated at 64x32. Both arms start from the
same weights, see the same batches (same seed) and train for the same epochs; two seeds each. The distillation is
FastReID's (`KD_FASTREID`: symmetric KL of softmax(logits/16), weight 1).

    python bench/distill.py --teacher /work/market_run/checkpoints/best.pth            # 4 runs (~30 min on 1 core), then the table
    python bench/distill.py --only alone:0 ; python bench/distill.py --only kd:0 ...   # one run each (run two at once on two cores)
    python bench/distill.py --report                                                   # the table from the runs in --out, + speed

Measured (2-core shared machine, 1 torch thread; teacher = bench/train_market.py's MobileNetV2, 128x64, mAP 48.1), 6 epochs:
    student alone 64x32: mAP 23.3 / 24.0 (seeds 0 / 1; 6.1 / 4.8 min) -> + KD: 29.1 / 29.4 (9.2 / 9.8 min): +5.6 mAP, +7.1 rank-1;
    student 2.18 ms/image vs teacher 9.74 ms/image (4.5x faster) -- bench/results/distill.json

Root: --root, else $REID_NB_MARKET, else ../shared/data/market1501_train (skips cleanly when absent).
Results: <out>/<mode>_s<seed>.json per run; bench/results/distill.json (the table, command, date, hardware, commit).
"""
import argparse, json, shlex, statistics, sys, time
from pathlib import Path
from _common import RESULTS, MARKET_MODEL, N_TEST_IDS, market_root, market_found, market_proxy, proxy_note, provenance, save_json

PUBLISHED = [('R101-ibn (teacher)', 90.66, 81.14), ('R34 (student alone)', 86.31, 73.28), ('R34 + KL ("JS Div")', 88.60, 77.80),
             ('R34 + KL + overhaul', 88.73, 78.25)]

def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default=str(market_root()), help='Market-1501 folder (default: $REID_NB_MARKET, else ../shared/data/market1501_train)')
    p.add_argument('--teacher', default=str(MARKET_MODEL), help='a trained reid_nb checkpoint on the same train ids')
    p.add_argument('--arch', default='mobilenetv2_100', help='student backbone with shipped ImageNet weights')
    p.add_argument('--size', type=int, nargs=2, default=[64, 32], help='student input H W (training copy and evaluation)')
    p.add_argument('--epochs', type=int, default=6)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--num-instances', type=int, default=4)
    p.add_argument('--base-lr', type=float, default=7e-4)
    p.add_argument('--steps', type=int, nargs='+', default=[80, 110], help="multi-step epochs on the recipe's 120-epoch scale")
    p.add_argument('--kd', default='sym_kl', choices=['sym_kl', 'kl', 'l1'], help='logit term')
    p.add_argument('--T', type=float, default=16.)
    p.add_argument('--kd-weight', type=float, default=1.)
    p.add_argument('--pkt', type=float, default=0., help='PKT weight alpha (paper eq. 9-10); 0: off')
    p.add_argument('--ema', type=float, default=None, help='EMA teacher momentum (FastReID KD.EMA); default off')
    p.add_argument('--n-test-ids', type=int, default=N_TEST_IDS)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--limit-ids', type=int, default=0, help='smoke tests: only the first N identities (then the teacher must match)')
    p.add_argument('--only', default=None, help="one run, MODE:SEED with MODE alone or kd (e.g. kd:0)")
    p.add_argument('--report', action='store_true', help='only the table, from the runs found in --out')
    p.add_argument('--out', default='/tmp/distill')
    p.add_argument('--results', default=str(RESULTS), help="folder for distill.json ('' for none)")
    return p.parse_args(argv)

def run_one(a, mode:str, seed:int, df, argv=None)->dict:
    "Train one student (`alone` or `kd`) with `seed`; evaluate it at the student size; write <out>/<mode>_s<seed>.json."
    import torch
    from reid_nb.core import seed_everything
    from reid_nb.backbones import shipped_weights
    from reid_nb.models import load_reid_model
    from reid_nb.learner import recipe_dataloaders, reid_learner
    from reid_nb.distill import distill_learner, ResizeBatch, teacher_outputs
    teacher = load_reid_model(a.teacher)
    t_size = teacher.reid_meta.size or (128, 64)
    dls = recipe_dataloaders(df, 'bagtricks', size=t_size, size_test=tuple(a.size), bs=a.bs, num_instances=a.num_instances,
                             test_bs=256, num_workers=0, seed=seed)
    if teacher.build_args['num_classes'] != dls.n_classes:
        raise SystemExit(f"the teacher classifies {teacher.build_args['num_classes']} identities, the split has {dls.n_classes} train ids")
    xb, yb = dls.train.one_batch()
    t_acc = float((teacher_outputs(teacher, xb).logits.argmax(1) == yb).float().mean())
    print(f"[{mode} seed {seed}] teacher {a.teacher} at {t_size[0]}x{t_size[1]}: accuracy on a training batch {t_acc*100:.0f}% "
          "(its classes are the student's)", flush=True)
    common = dict(pretrained=shipped_weights(a.arch), base_lr=a.base_lr, epochs=a.epochs, steps=a.steps, eval_period=10**6, flip=False)
    seed_everything(seed)  # the same initial student and the same batches in both arms
    if mode == 'alone': learn = reid_learner(dls, a.arch, 'bagtricks', cbs=[ResizeBatch(a.size)], **common)
    else:
        kd = dict(logits=a.kd, T=a.T, logit_weight=a.kd_weight, pkt_weight=a.pkt, ema=a.ema, student_size=tuple(a.size))
        learn = distill_learner(dls, a.arch, teacher=teacher, recipe='bagtricks', kd=kd, **common)
    t0 = time.time()
    res = learn.fit_reid(save_dir=Path(a.out)/f'{mode}_s{seed}')
    minutes = (time.time() - t0) / 60
    n = len(dls.train)
    terms = {k: statistics.fmean(v[-n:]) for k, v in learn.recorder.terms.items()}
    r = dict(**provenance(__file__, argv), mode=mode, seed=seed, rank1=float(res.cmc[0]) * 100, mAP=float(res.mAP) * 100, mINP=float(res.mINP) * 100, minutes=minutes,
             last_epoch_terms=terms, teacher_batch_acc=t_acc, kd=(None if mode == 'alone' else kd), epochs=a.epochs, size=a.size,
             teacher_size=list(t_size), iters_per_epoch=n)
    save_json(r, Path(a.out)/f'{mode}_s{seed}.json')
    print(f"[{mode} seed {seed}] rank-1 {r['rank1']:.1f}  mAP {r['mAP']:.1f}  mINP {r['mINP']:.1f}  ({minutes:.1f} min; last-epoch terms "
          + ', '.join(f'{k} {v:.3f}' for k, v in terms.items()) + ')', flush=True)
    return r

def speed(a)->dict:
    "Eval-mode forward time per image: teacher at its size vs student at the student size (batch 64, median of 7)."
    import torch
    from reid_nb.models import load_reid_model, build_model, model_summary
    teacher = load_reid_model(a.teacher)
    t_size = teacher.reid_meta.input_size()
    student = build_model(a.arch, num_classes=teacher.build_args['num_classes'], pretrained=False, last_stride=1).eval()
    out = {}
    for name, m, size in (('teacher', teacher, t_size), ('student', student, tuple(a.size))):
        x = torch.rand(64, 3, *size)
        with torch.no_grad():
            for _ in range(2): m(x)
            ts = []
            for _ in range(7):
                t0 = time.perf_counter(); m(x); ts.append(time.perf_counter() - t0)
        out[name] = dict(size=list(size), ms_per_image=statistics.median(ts) / 64 * 1e3,
                         gflops=float(model_summary(m, size).loc['total', 'gflops']))
    out['speedup'] = out['teacher']['ms_per_image'] / out['student']['ms_per_image']
    return out

def report(a, argv)->int:
    import torch
    from reid_nb.core import load_checkpoint
    out = Path(a.out)
    runs = {(m, s): json.loads((out/f'{m}_s{s}.json').read_text()) for m in ('alone', 'kd') for s in a.seeds
            if (out/f'{m}_s{s}.json').is_file()}
    if not runs: print(f"no runs in {out}: run them first (without --report, or with --only MODE:SEED)"); return 1
    tck = load_checkpoint(a.teacher)
    tm = tck.get('metrics') or {}
    sp = speed(a)
    mean = lambda m, k: statistics.fmean(runs[(m, s)][k] for s in a.seeds if (m, s) in runs)
    spread = lambda m, k: (max(runs[(m, s)][k] for s in a.seeds if (m, s) in runs) - min(runs[(m, s)][k] for s in a.seeds if (m, s) in runs))
    t, s_ = sp['teacher'], sp['student']
    print(f"\nMarket-1501 proxy ({a.n_test_ids} test ids, split seed 0), CPU x{a.threads}; student {a.arch} ImageNet, {a.epochs} epochs, "
          f"KD = {a.kd} T={a.T:g} weight {a.kd_weight:g}" + (f", PKT {a.pkt:g}" if a.pkt else '') + (f", EMA {a.ema:g}" if a.ema else ''))
    print('| model | input | seed | rank-1 | mAP | mINP | ms / image | train time |\n|:--|:--|--:|--:|--:|--:|--:|--:|')
    if tm: print(f"| teacher MobileNetV2 BoT (its best.pth) | {t['size'][0]}x{t['size'][1]} | 0 | {tm.get('rank1', float('nan')):.1f} | "
                 f"{tm.get('mAP', float('nan')):.1f} | {tm.get('mINP', float('nan')):.1f} | {t['ms_per_image']:.2f} | - |")
    for (m, s), r in sorted(runs.items()):
        name = 'student alone' if m == 'alone' else 'student + KD'
        print(f"| {name} | {a.size[0]}x{a.size[1]} | {s} | {r['rank1']:.1f} | {r['mAP']:.1f} | {r['mINP']:.1f} | {s_['ms_per_image']:.2f} | {r['minutes']:.1f} min |")
    both = all((m, s) in runs for m in ('alone', 'kd') for s in a.seeds)
    summary = {}
    if both:
        for m in ('alone', 'kd'):
            summary[m] = {k: mean(m, k) for k in ('rank1', 'mAP', 'mINP')} | {'mAP_spread': spread(m, 'mAP')}
            print(f"| {'student alone' if m == 'alone' else 'student + KD'}, mean of {len(a.seeds)} | {a.size[0]}x{a.size[1]} | - | "
                  f"{summary[m]['rank1']:.1f} | {summary[m]['mAP']:.1f} | {summary[m]['mINP']:.1f} | {s_['ms_per_image']:.2f} | - |")
        gain = summary['kd']['mAP'] - summary['alone']['mAP']
        worst = max(summary['alone']['mAP_spread'], summary['kd']['mAP_spread'])
        paired = [runs[('kd', s)]['mAP'] - runs[('alone', s)]['mAP'] for s in a.seeds]
        summary.update(gain_mAP=gain, seed_spread_mAP=worst, paired_gains_mAP=paired)
        print(f"\ndistillation gain: mAP {gain:+.1f} (per seed {', '.join(f'{g:+.1f}' for g in paired)}), rank-1 "
              f"{summary['kd']['rank1'] - summary['alone']['rank1']:+.1f}; seed-to-seed mAP spread {worst:.1f} "
              f"-> {'PASS' if gain > worst and min(paired) > 0 else 'FAIL'}: the gain must exceed the spread")
    print(f"speed (eval forward, batch 64, 1 thread): teacher {t['ms_per_image']:.2f} ms/image ({t['gflops']:.3f} GFLOPs) at "
          f"{t['size'][0]}x{t['size'][1]}, student {s_['ms_per_image']:.2f} ms/image ({s_['gflops']:.3f} GFLOPs) at {a.size[0]}x{a.size[1]}: "
          f"{sp['speedup']:.1f}x faster ({'PASS' if sp['speedup'] >= 2 else 'FAIL'}: needs >= 2x)")
    print('\nPublished (FastDistill README, DukeMTMC):\n| model | R1 | mAP |\n|:--|--:|--:|')
    for n, r1, mp in PUBLISHED: print(f"| {n} | {r1:.2f} | {mp:.2f} |")
    if a.results:
        res_json = {**provenance(__file__, argv), 'dataset': 'Market1501', 'data': proxy_note(market_proxy(a.root, a.n_test_ids, limit_ids=a.limit_ids)),
                    'teacher': {'path': a.teacher, 'metrics': tm, **t}, 'student': {'arch': a.arch, **s_}, 'speedup': sp['speedup'],
                    'runs': [{'command': shlex.join(['python', 'bench/distill.py', '--only', f'{m}:{s}', '--out', a.out]), **runs[(m, s)]} for m, s in sorted(runs)], 'summary': summary, 'published_dukemtmc': PUBLISHED}
        save_json(res_json, Path(a.results)/'distill.json'); print(f"results: {Path(a.results)/'distill.json'}")
    return 0

def main(argv=None):
    a = _args(argv)
    import torch
    torch.set_num_threads(a.threads)
    if not market_found(a.root): return 0
    if not Path(a.teacher).is_file(): print(f"skipped: no teacher checkpoint at {a.teacher} (train one with bench/train_market.py)"); return 0
    if a.report: return report(a, argv)
    df = market_proxy(a.root, a.n_test_ids, limit_ids=a.limit_ids)   # the teacher's split, whatever the training seed
    todo = [tuple(a.only.split(':'))] if a.only else [(m, s) for s in a.seeds for m in ('alone', 'kd')]
    for m, s in todo:
        if m not in ('alone', 'kd'): raise SystemExit(f"--only {a.only}: MODE must be alone or kd")
        run_one(a, m, int(s), df, argv)
    return 0 if a.only else report(a, argv)

if __name__ == '__main__': sys.exit(main())
