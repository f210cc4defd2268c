"""The `reid-nb` console script, run as a user would, output piped to a file: demo, train/eval round trip,
one-line errors, shown warnings, refusal to overwrite a run, resume, seeds, corrupt images, divergence."""
import json, os, re, shutil, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest, yaml
from PIL import Image

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def reid_nb(*args, timeout=300, cache=None):
    "Run the console script (or `python -m` the module when the script is not on PATH), stdout/stderr to pipes."
    exe = [shutil.which('reid-nb')] if shutil.which('reid-nb') else [sys.executable, '-c', 'import sys; from reid_nb.cli import main; sys.exit(main())']
    env = {**ENV, **({'REID_NB_CACHE': str(cache)} if cache else {})}
    return subprocess.run(exe + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)

def _one_line_error(p, *words):
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    err = [l for l in p.stderr.splitlines() if l.strip() and not l.startswith('reid-nb: warning:')]
    assert 'Traceback' not in p.stderr, p.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith('reid-nb: error:'), p.stderr
    for w in words: assert w in err[0], (w, err[0])
    return err[0]

def _clean_log(out):
    "Piped output: no progress-bar fragments, no NaN rows, no bare Python lists."
    assert '\r' not in out and '\x1b' not in out, out[-1000:]
    assert 'nan' not in out.lower().split(), out[-1000:]
    assert not re.search(r'^\[\d', out, re.M), out[-1000:]

def test_demo(tmp_path):
    p = reid_nb('demo', '--epochs', 1, '--n-ids', 16, '--out', tmp_path, cache=tmp_path/'cache')
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    _clean_log(out)
    for col in ('Rank-1', 'mAP', 'mINP', 'synthetic'): assert col in out, out[-2000:]
    t = _table(out)
    assert all(0 <= float(t[k]) <= 100 for k in ('Rank-1', 'Rank-5', 'mAP', 'mINP')), t
    assert t['Queries'].split('/')[0] == t['Queries'].split('/')[1], t         # every synthetic query has a match
    pic = tmp_path/'rank_list.png'
    assert pic.is_file() and pic.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and pic.stat().st_size > 10_000
    assert (tmp_path/'checkpoints'/'last.pth').is_file()

def _config(tmp_path, out='out', **extra):
    cfg = {'_BASE_': str(Path(__file__).resolve().parents[1]/'configs'/'Base-bagtricks.yml'),
           'MODEL': {'BACKBONE': {'NAME': 'build_osnet_backbone', 'DEPTH': 'x0_25', 'FEAT_DIM': 128, 'PRETRAIN': False}},
           'INPUT': {'SIZE_TRAIN': [64, 32], 'SIZE_TEST': [64, 32]},
           'DATASETS': {'NAMES': ['synthetic'], 'TESTS': ['synthetic']},
           'DATALOADER': {'NUM_WORKERS': 0}, 'SOLVER': {'IMS_PER_BATCH': 32, 'AMP': {'ENABLED': False}, 'BASE_LR': 0.001},
           'TEST': {'IMS_PER_BATCH': 128}, 'OUTPUT_DIR': str(tmp_path/out)}
    for k, v in extra.items(): cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    f = tmp_path/f'{out}.yml'; f.write_text(yaml.safe_dump(cfg)); return f

def _data(tmp_path):
    "The synthetic data set, written once where the 'synthetic' loader reads it back."
    from reid_nb.data.synthetic import synthetic_reid
    d = tmp_path/'data'
    synthetic_reid(d, n_ids=16, imgs_per_id=6, size=(64, 32), seed=0)
    return d

def _table(out, name='synthetic')->dict:
    "The results table printed for data set `name`, as {column: value}."
    lines = out.splitlines()
    i = max(i for i, l in enumerate(lines) if l.startswith(f'| {name}'))
    cells = lambda l: [c.strip() for c in l.strip().strip('|').split('|')]
    return dict(zip(cells(lines[i - 2]), cells(lines[i])))

def _train(f, data, *args, cache):
    p = reid_nb('train', '--config-file', f, '--root', data, *args, cache=cache)
    assert p.returncode == 0, p.stderr[-3000:]
    _clean_log(p.stdout)
    return p

def test_train_eval_resume(tmp_path):
    data, cache = _data(tmp_path), tmp_path/'cache'
    f, out = _config(tmp_path, TEST={'EVAL_PERIOD': 1}), tmp_path/'out'
    p = _train(f, data, '--epochs', 1, cache=cache)
    lines = p.stdout.splitlines()
    assert lines[0].startswith('train: 8 identities') and 'at (64, 32)' in lines[0], lines[:2]
    assert lines[1].split()[:5] == ['epoch', 'train_loss', 'ce', 'triplet', 'rank1'], lines[:3]   # a header line, then the rows
    assert lines[2].split()[0] == '0'
    for name in ('config.yaml', 'log.csv', 'results.json', 'checkpoints/last.pth', 'checkpoints/best.pth'): assert (out/name).is_file(), name
    assert yaml.safe_load((out/'config.yaml').read_text())['SOLVER']['BASE_LR'] == 0.001
    res = json.loads((out/'results.json').read_text())
    # eval with the config, and with the checkpoint alone (it rebuilds its model and knows its data sets): the same numbers
    for args in (('--config-file', f), ()):
        q = reid_nb('eval', *args, '--root', data, '--weights', out/'checkpoints'/'last.pth', cache=cache)
        assert q.returncode == 0, q.stderr[-3000:]
        t = _table(q.stdout)
        assert [float(t[k]) for k in ('Rank-1', 'Rank-5', 'mAP', 'mINP')] == pytest.approx([res[k] for k in ('Rank-1', 'Rank-5', 'mAP', 'mINP')], abs=0.006), (t, res)
    # the same OUTPUT_DIR again: refused, nothing touched
    before = (out/'log.csv').read_bytes()
    _one_line_error(reid_nb('train', '--config-file', f, '--root', data, cache=cache), 'already holds a run', '--resume', '--overwrite')
    assert (out/'log.csv').read_bytes() == before
    # resume to 2 epochs: it says where it resumes, the epochs keep their numbers, the log keeps one header
    p = _train(f, data, '--epochs', 2, '--resume', cache=cache)
    assert 'resuming from' in p.stdout and '1 of 2 epochs done, continuing at epoch 1' in p.stdout, p.stdout[-2000:]
    rows = [l.split() for l in p.stdout.splitlines() if re.match(r'^\s*\d+\s', l)]
    assert [r[0] for r in rows] == ['1'], p.stdout
    log = pd.read_csv(out/'log.csv')
    assert list(log.epoch) == [0, 1] and log.train_loss.dtype.kind == 'f' and log.mAP.dtype.kind == 'f', log
    # resuming the finished run says so, and changes nothing
    before = (out/'log.csv').read_bytes()
    p = _train(f, data, '--epochs', 2, '--resume', cache=cache)
    assert 'already finished' in p.stdout + p.stderr, (p.stdout[-1500:], p.stderr[-1500:])
    assert (out/'log.csv').read_bytes() == before
    # --overwrite starts afresh
    _train(f, data, '--epochs', 1, '--overwrite', cache=cache)
    assert list(pd.read_csv(out/'log.csv').epoch) == [0]

def test_train_distiller_config(tmp_path):
    "A FastDistill config (META_ARCHITECTURE Distiller + KD section) distils its teacher; the teacher stays out of the student's files."
    import torch
    data, cache = _data(tmp_path), tmp_path/'cache'
    _train(_config(tmp_path, out='teacher'), data, '--epochs', 1, cache=cache)
    tw = tmp_path/'teacher'/'checkpoints'/'last.pth'
    before = tw.read_bytes()
    f = _config(tmp_path, out='student', MODEL={'META_ARCHITECTURE': 'Distiller'},
                KD={'MODEL_CONFIG': [str(tmp_path/'teacher'/'config.yaml')], 'MODEL_WEIGHTS': [str(tw)]})
    p = _train(f, data, '--epochs', 1, cache=cache)
    header = p.stdout.splitlines()[1].split()
    assert 'kd_logits' in header, p.stdout[:500]                                     # the distillation term is trained and shown
    assert tw.read_bytes() == before                                                   # the teacher's file is untouched
    sd = torch.load(tmp_path/'student'/'checkpoints'/'last.pth', map_location='cpu', weights_only=False)
    from reid_nb.models import load_reid_model
    student = load_reid_model(tmp_path/'student'/'checkpoints'/'last.pth')           # loads strictly: the student's tensors only
    assert set(sd['model']) == set(student.state_dict()) and not any('teacher' in k for k in sd['model'])
    _one_line_error(reid_nb('train', '--config-file', _config(tmp_path, out='s2', MODEL={'META_ARCHITECTURE': 'Distiller'}), '--root', data, cache=cache),
                    'KD.MODEL_WEIGHTS')                                                # a Distiller with no teacher is refused, not trained alone

def test_seed_makes_runs_repeatable(tmp_path):
    data, cache = _data(tmp_path), tmp_path/'cache'
    logs = []
    for out, seed in (('a', None), ('b', None), ('c', 1)):
        _train(_config(tmp_path, out=out), data, '--epochs', 1, *(['--seed', seed] if seed is not None else []), cache=cache)
        logs.append(pd.read_csv(tmp_path/out/'log.csv'))
        assert yaml.safe_load((tmp_path/out/'config.yaml').read_text())['SEED'] == (seed or 0)
    assert logs[0].drop(columns='time').equals(logs[1].drop(columns='time'))          # same seed: the same run
    assert (tmp_path/'a'/'results.json').read_text() == (tmp_path/'b'/'results.json').read_text()
    assert logs[0].train_loss[0] != logs[2].train_loss[0]                              # another seed: another run

def test_warnings_and_bad_images(tmp_path):
    "Files the parser skips, unreadable images and random initial weights are each said in one line; training goes on."
    data, cache = _data(tmp_path), tmp_path/'cache'
    train_dir = data/'bounding_box_train'
    Image.new('RGB', (32, 64)).save(train_dir/'holiday_photo.jpg')                    # breaks Market's naming rule
    victim = sorted(train_dir.glob('*_c*.jpg'))[0]
    victim.write_bytes(victim.read_bytes()[:300])                                     # a truncated JPEG
    f = _config(tmp_path, MODEL={'BACKBONE': {'NAME': 'build_osnet_backbone', 'DEPTH': 'x0_25', 'FEAT_DIM': 128, 'PRETRAIN': True, 'PRETRAIN_PATH': ''}},
                DATASETS={'NAMES': ['Market1501'], 'TESTS': ['Market1501']})  # the synthetic files follow Market's layout and names
    p = _train(f, data, '--epochs', 1, cache=cache)
    warns = [l for l in p.stderr.splitlines() if l.startswith('reid-nb: warning:')]
    assert any('holiday_photo.jpg' in w for w in warns), p.stderr
    assert any('cannot be read and are skipped' in w and victim.name in w for w in warns), p.stderr
    assert sum('RANDOM weights' in w and 'PRETRAIN_PATH' in w for w in warns) == 1, p.stderr
    assert 'Traceback' not in p.stderr and '| Market1501' in p.stdout
    assert len(warns) == 3, warns                                                       # nothing else to say

def test_errors(tmp_path):
    f = _config(tmp_path)
    _one_line_error(reid_nb('train', '--config-file', f, 'SOLVER.BASE_LRR', '0.1'), 'SOLVER.BASE_LRR')
    _one_line_error(reid_nb('train', '--config-file', tmp_path/'nope.yml'), 'nope.yml')
    cfg = yaml.safe_load(f.read_text()); cfg['DATASETS'] = {'NAMES': ['Market1501'], 'TESTS': ['Market1501']}
    g = tmp_path/'market.yml'; g.write_text(yaml.safe_dump(cfg))
    _one_line_error(reid_nb('train', '--config-file', g, '--root', tmp_path/'no_such_root'), 'no_such_root')
    _one_line_error(reid_nb('eval', '--config-file', f, '--weights', tmp_path/'missing.pth'), 'missing.pth')
    (tmp_path/'cut.pth').write_bytes(b'PK\x03\x04' + b'\0' * 100)
    _one_line_error(reid_nb('eval', '--weights', tmp_path/'cut.pth'), 'cut.pth', 'truncated or corrupt')
    # a learning rate that makes the loss blow up: stopped at once, one line naming the learning rate
    data = _data(tmp_path)
    p = reid_nb('train', '--config-file', f, '--root', data, '--epochs', 2, 'SOLVER.BASE_LR', '1e8', cache=tmp_path/'cache')
    _one_line_error(p, 'training stopped:', 'the learning rate is 1e+08', 'SOLVER.BASE_LR')
