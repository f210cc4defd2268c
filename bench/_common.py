"""What the benchmarks share: where the data and the trained model are, the Market-1501 proxy split, synthetic
features of real benchmark shapes, and the provenance block and atomic write of every result file.

A bench imports it from its own folder (`from _common import ...`; Python puts a script's folder on `sys.path`),
and no bench imports another. FastReID, which some benches time as a reference, predates Python 3.10
(`from collections import Mapping`): import it inside `reid_nb.test_utils.fastreid_compat()`, the one shim
(shared with the notebooks and tests), which lends `collections` the old names for the import only.

Result files (bench/results/*.json) start with `provenance(__file__, argv)`: bench, command, date (ISO-8601, UTC),
hardware, commit and package versions; `save_json` writes them atomically.
"""
import contextlib, datetime, json, os, platform, shlex, subprocess, sys, tempfile, warnings
import numpy as np
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO, RESULTS = BENCH.parent, BENCH/'results'
DATA = REPO.parent/'shared'/'data'   # the real data at hand, outside the repository (never committed)
MARKET_ENV = 'REID_NB_MARKET'          # the one environment variable naming the Market-1501 root
MARKET_MODEL = REPO.parent/'market_run'/'checkpoints'/'best.pth'   # what `bench/train_market.py --out ../market_run` trains
SPLIT_SEED, N_TEST_IDS = 0, 375        # the Market proxy every bench evaluates on (and train_market's model trains beside)

# --- the Market-1501 proxy split -----------------------------------------------------------------------------------

def market_root(root=None)->Path:
    "Market-1501's folder (the one holding bounding_box_train/): `root` when given, else $REID_NB_MARKET, else ../shared/data/market1501_train."
    return Path(root or os.environ.get(MARKET_ENV) or DATA/'market1501_train')

def market_found(root)->bool:
    "Whether `root` holds Market-1501's training crops; when not, says that the bench skips (benches skip cleanly without data)."
    if (Path(root)/'bounding_box_train').is_dir(): return True
    print(f"skipped: Market-1501 train crops not found at {Path(root)/'bounding_box_train'} (pass its root, or set ${MARKET_ENV})")
    return False

def market_proxy(root, # Market-1501's folder (see `market_root`)
                 n_test_ids:int=N_TEST_IDS, # identities moved to query/gallery; the others stay train
                 seed:int=SPLIT_SEED, # draws the test identities and the query images: fixed, not a bench's training seed
                 limit_ids:int=0, # smoke runs: only the first N identities (0: all)
                ):
    """Market's protocol on bounding_box_train alone (its official query/test are not at hand): disjoint train / test
    identities, then per test identity one image per camera as query and the rest gallery (`make_query_gallery`)."""
    from reid_nb.data.datasets import market1501, make_query_gallery
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', r'.*split folder\(s\) .* not found')   # query/ and bounding_box_test/ are absent by design
        df = market1501(root)
    df = df[df.split == 'train']          # also when the official folders are there: the proxy is built from train alone
    if limit_ids: df = df[df.pid.isin(sorted(df.pid.unique())[:limit_ids])]
    df = make_query_gallery(df.reset_index(drop=True), n_test_ids, seed=seed)
    df.attrs['split_seed'] = seed
    return df

def proxy_note(df)->str:
    "One line saying what a `market_proxy` frame holds, for a result file's `data`."
    n, train = df.split.value_counts(), df.split == 'train'
    return (f"Market-1501 proxy split: {df.pid[train].nunique()} train identities ({n.get('train', 0)} images) and {df.pid[~train].nunique()} test "
            f"identities ({n.get('query', 0)} query / {n.get('gallery', 0)} gallery images, make_query_gallery seed {df.attrs.get('split_seed')}), "
            "all from bounding_box_train; not the official query/gallery")

# --- structured distractors (the gallery benches' real-plus-structured mix) ---------------------------------------

def structured_distractors(real:np.ndarray, n:int, seed:int, basis:np.ndarray, scale:np.ndarray, per_id:int=16)->np.ndarray:
    """n structured distractors for a gallery of real features (bench/gallery.py, bench/serve.py): half pseudo-identities (mixed
    real centres + members), half perturbed real features, spread along the real features' principal directions `basis` (k×D)
    with their spreads `scale` (k); L2-normalised."""
    r = np.random.default_rng(seed)
    def spread(m, s): return (r.standard_normal((m, len(scale))).astype(np.float32) * scale * s) @ basis
    n_id = n // 2
    ids = -(-n_id // per_id)
    a, b = real[r.integers(0, len(real), ids)], real[r.integers(0, len(real), ids)]
    w = r.uniform(0.3, 0.7, (ids, 1)).astype(np.float32)
    centres = w * a + (1 - w) * b + spread(ids, 0.5)
    members = np.repeat(centres, per_id, 0)[:n_id] + spread(n_id, 0.6)
    dup = real[r.integers(0, len(real), n - n_id)] + spread(n - n_id, 0.35)
    x = np.concatenate([members, dup]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x

# --- synthetic features ------------------------------------------------------------------------------------------

DIM = 2048
SHAPES = {  # query x gallery sizes, identities and cameras of real benchmarks; 'toy': a quick check that a bench runs
    'market': dict(nq=3368, ng=15913, ids=751, cams=6),
    'msmt17': dict(nq=11659, ng=82161, ids=3060, cams=15),
    'toy': dict(nq=300, ng=3000, ids=100, cams=6)}

def synthetic_features(nq:int, ng:int, # queries, gallery items
                       ids:int, cams:int, # identities and cameras drawn from
                       dim:int=DIM, # feature size
                       noise:float=2.8, # Gaussian noise around the identity centre (the centres are N(0, 1))
                       cam_shift:float=0.6, # size of a per-camera shift: same-camera impostors come close
                       seed:int=0,
                       device='cpu', # where the features are stored (drawn on the CPU, so the same everywhere)
                       block:int=4096, # rows drawn at a time: no big temporaries
                      )->tuple:
    "Query and gallery `(feats, pids, camids)` shaped like a trained model's: identity centre + camera shift + noise, L2-normalised."
    import torch
    g = torch.Generator().manual_seed(seed)
    centres, cam_dirs = torch.randn(ids, dim, generator=g), torch.randn(cams, dim, generator=g)
    def draw(n):
        pids, camids = torch.randint(0, ids, (n,), generator=g), torch.randint(0, cams, (n,), generator=g)
        f = torch.empty(n, dim, device=device)
        for i in range(0, n, block):
            p, c = pids[i:i + block], camids[i:i + block]
            x = centres[p] + cam_shift * cam_dirs[c] + noise * torch.randn(len(p), dim, generator=g)
            f[i:i + block] = torch.nn.functional.normalize(x, dim=1).to(device)
        return f, pids, camids
    return draw(nq), draw(ng)

# --- provenance and result files ---------------------------------------------------------------------------------

def git_commit()->str:
    "The short commit of the code that ran, with '+dirty' when tracked files had changes; 'unknown' outside git."
    git = lambda *a: subprocess.run(['git', *a], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    try: return git('rev-parse', '--short', 'HEAD') + ('+dirty' if git('status', '--porcelain', '--untracked-files=no') else '')
    except (OSError, subprocess.CalledProcessError): return 'unknown'

def hardware(threads:int|None=None, # threads the bench ran with (default: torch's current setting)
            )->str:
    "The CPU model, cores visible and threads used, and the GPU when CUDA has one, in words."
    import torch
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    threads = threads or torch.get_num_threads()
    gpu = f"; GPU {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})" if torch.cuda.is_available() else '; no GPU'
    return f"{cpu} ({os.cpu_count()} cores visible), {threads} thread{'s' if threads > 1 else ''}{gpu}"

_DISTS = {'torch': ['torch'], 'timm': ['timm'], 'numpy': ['numpy'], 'onnxruntime': ['onnxruntime', 'onnxruntime-gpu'],
          'openvino': ['openvino'], 'faiss': ['faiss-cpu', 'faiss-gpu', 'faiss']}

def versions()->dict:
    "Python's and the packages' versions a result depends on (None: not installed); reid_nb's from the code that ran."
    def version(dists):
        for d in dists:
            with contextlib.suppress(metadata.PackageNotFoundError): return metadata.version(d)
    import reid_nb
    return {'python': platform.python_version(), 'reid_nb': reid_nb.__version__, **{k: version(d) for k, d in _DISTS.items()}}

def provenance(script:str, # the bench's `__file__`
               argv:list|None=None, # its arguments (default: the command line's)
               threads:int|None=None, # threads the bench ran with, when not torch's setting in this process
              )->dict:
    "The block every result file starts with: bench, command, date (ISO-8601, UTC), hardware, commit and versions."
    args = sys.argv[1:] if argv is None else list(argv)
    return dict(bench=Path(script).stem, command=shlex.join(['python', f'bench/{Path(script).name}', *args]),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                hardware=hardware(threads), commit=git_commit(), versions=versions())

def save_json(obj, # JSON-able
              path, # the file; its folder is made
             )->Path:
    "Write `obj` as JSON atomically (a temporary file beside `path`, then `os.replace`): never a half-written result."
    path = Path(path)
    text = json.dumps(obj, indent=1)   # what cannot be written fails here, before any file is touched
    path.parent.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0); os.umask(umask)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'w') as f:
            os.fchmod(f.fileno(), 0o666 & ~umask)   # as an ordinary new file (mkstemp's are private)
            f.write(text); f.flush(); os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError): os.unlink(tmp)
        raise
    return path
