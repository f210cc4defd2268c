"""Data-loading throughput: images/s for JPEG decode alone and decode + training transforms at 256×128,
through reid_nb's loaders, with 0 and 2 worker processes, on the real Market-1501 training crops.

    python bench/data_loading.py [ROOT] [--batches 40] [--bs 64] [--workers 0 2]

ROOT (or $REID_NB_MARKET) is Market-1501's folder, the one holding `bounding_box_train/` (that folder itself is
accepted too; default ../shared/data/market1501_train from the repository root); the script exits cleanly
(status 0, a message) when it is absent. The crops are the train part of the Market proxy split with 50 test identities.
"""
import argparse, os, sys, time
from pathlib import Path
import torch
from _common import market_root, market_found, market_proxy

def throughput(loader, n_batches:int):
    "(images/s over batches 2..n, seconds to the first batch): the first batch pays worker start-up."
    t0 = time.perf_counter(); it = iter(loader)
    first = next(it); t1 = time.perf_counter(); n = 0
    for i, b in zip(range(n_batches - 1), it): n += len(b[0])
    t2 = time.perf_counter()
    return n / (t2 - t1), t1 - t0

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('root', nargs='?', default=str(market_root()))
    ap.add_argument('--batches', type=int, default=40, help='batches timed per setting (the first is excluded)')
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--workers', type=int, nargs='+', default=[0, 2])
    a = ap.parse_args(argv)
    root = Path(a.root).resolve()
    if root.name == 'bounding_box_train': root = root.parent
    if not market_found(root): return 0
    torch.set_num_threads(1)  # per-process; workers are the parallelism being measured
    from torch.utils.data import DataLoader
    from reid_nb.data.loaders import reid_dataloaders, ReIDDataset
    df = market_proxy(root, n_test_ids=50)
    n_train = (df.split == 'train').sum()
    print(f"Market-1501 train crops: {len(df)} images ({n_train} train), {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"batch {a.bs}, {a.batches} batches per row (first excluded)\n")
    rows = []
    for w in a.workers:
        # decode only: PIL open + RGB convert + to float tensor, native 64×128
        ds = ReIDDataset(df[df.split == 'train'])
        dl = DataLoader(ds, batch_size=a.bs, shuffle=True, num_workers=w, generator=torch.Generator().manual_seed(0))
        rows.append(('decode only (64×128)', w) + throughput(dl, a.batches))
        # decode + BoT train transforms (resize 256×128 bicubic, flip, pad 10 + crop, random erasing) via the P×K loader
        dls = reid_dataloaders(df, size=(256, 128), bs=a.bs, num_instances=4, num_workers=w)
        rows.append(('decode + train tfms 256×128 (P×K loader)', w) + throughput(dls.train, a.batches))
        del dl, dls
    print("| pipeline | workers | images/s | first batch (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, w, ips, first in rows: print(f"| {name} | {w} | {ips:,.0f} | {first:.2f} |")
    return 0

if __name__ == '__main__': sys.exit(main())
