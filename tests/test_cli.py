"The `reid-nb` console script, run as a user would: demo, train/eval round trip, one-line errors."
import os, shutil, subprocess, sys
from pathlib import Path
import pytest, yaml

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}

def reid_nb(*args, timeout=300):
    "Run the console script (or `python -m` the module when the script is not on PATH)."
    exe = [shutil.which('reid-nb')] if shutil.which('reid-nb') else [sys.executable, '-c', 'import sys; from reid_nb.cli import main; sys.exit(main())']
    return subprocess.run(exe + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=ENV)

def _one_line_error(p, *words):
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    err = [l for l in p.stderr.splitlines() if l.strip()]
    assert 'Traceback' not in p.stderr, p.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith('reid-nb: error:'), p.stderr
    for w in words: assert w in err[0], (w, err[0])

def test_demo(tmp_path):
    p = reid_nb('demo', '--epochs', 1, '--n-ids', 16, '--out', tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    for col in ('Rank-1', 'mAP', 'mINP', 'synthetic'): assert col in out, out[-2000:]
    row = [l for l in out.splitlines() if l.startswith('| synthetic')][0]
    vals = [float(v) for v in row.strip('|').split('|')[1:6]]
    assert all(0 <= v <= 100 for v in vals), row
    pic = tmp_path/'rank_list.png'
    assert pic.is_file() and pic.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and pic.stat().st_size > 10_000
    assert (tmp_path/'checkpoints'/'last.pth').is_file()

def _config(tmp_path):
    cfg = {'_BASE_': str(Path(__file__).resolve().parents[1]/'configs'/'Base-bagtricks.yml'),
           'MODEL': {'BACKBONE': {'NAME': 'build_osnet_backbone', 'DEPTH': 'x0_25', 'FEAT_DIM': 128, 'PRETRAIN': False}},
           'INPUT': {'SIZE_TRAIN': [64, 32], 'SIZE_TEST': [64, 32]},
           'DATASETS': {'NAMES': ['synthetic'], 'TESTS': ['synthetic']},
           'DATALOADER': {'NUM_WORKERS': 0}, 'SOLVER': {'IMS_PER_BATCH': 32, 'AMP': {'ENABLED': False}},
           'TEST': {'IMS_PER_BATCH': 128}, 'OUTPUT_DIR': str(tmp_path/'out')}
    f = tmp_path/'synth.yml'; f.write_text(yaml.safe_dump(cfg)); return f

def test_train_then_eval(tmp_path):
    f = _config(tmp_path); (tmp_path/'data').mkdir()  # the 'synthetic' data set is generated there
    p = reid_nb('train', '--config-file', f, '--root', tmp_path/'data', '--epochs', 1, 'SOLVER.BASE_LR', '0.001')
    assert p.returncode == 0, p.stderr[-3000:]
    assert '| synthetic' in p.stdout
    out = tmp_path/'out'
    for name in ('config.yaml', 'log.csv', 'results.json', 'checkpoints/last.pth', 'checkpoints/best.pth'): assert (out/name).is_file(), name
    assert yaml.safe_load((out/'config.yaml').read_text())['SOLVER']['BASE_LR'] == 0.001
    p = reid_nb('eval', '--config-file', f, '--root', tmp_path/'data', '--weights', out/'checkpoints'/'best.pth')
    assert p.returncode == 0, p.stderr[-3000:]
    assert '| synthetic' in p.stdout

def test_errors(tmp_path):
    f = _config(tmp_path)
    _one_line_error(reid_nb('train', '--config-file', f, 'SOLVER.BASE_LRR', '0.1'), 'SOLVER.BASE_LRR')
    _one_line_error(reid_nb('train', '--config-file', tmp_path/'nope.yml'), 'nope.yml')
    cfg = yaml.safe_load(f.read_text()); cfg['DATASETS'] = {'NAMES': ['Market1501'], 'TESTS': ['Market1501']}
    g = tmp_path/'market.yml'; g.write_text(yaml.safe_dump(cfg))
    _one_line_error(reid_nb('train', '--config-file', g, '--root', tmp_path/'no_such_root'), 'no_such_root')
    _one_line_error(reid_nb('eval', '--config-file', f, '--weights', tmp_path/'missing.pth'), 'missing.pth')
