"""Start-up time of the `reid-nb` command: `reid-nb --help`, and for every sub-command its `--help` and an argument error.

    python bench/cli_startup.py                      # this tree
    python bench/cli_startup.py --compare 15153cd    # and, in the same run, the code of an earlier commit

Each case is a fresh `python -c 'from reid_nb.cli import main; main()'` process with PYTHONPATH on the tree's code (the
console script does the same); the table gives the fastest of `--repeats` runs, in seconds. Start-up is what a user waits
for before anything happens, so it should stay well under a second: the CLI module imports only what argparse needs, and
each command imports torch & co. when it runs.
"""
import argparse, io, os, subprocess, sys, tarfile, tempfile, time
from pathlib import Path
from _common import REPO, provenance, save_json

CASES = {'help': ['--help'], 'arg error': ['--no-such-option']}

def run_once(code:Path, argv:list)->float:
    "Seconds for one start-up, run in `code` (`python -c` puts the current folder first on sys.path, before PYTHONPATH)."
    t = time.perf_counter()
    subprocess.run([sys.executable, '-c', 'import sys; from reid_nb.cli import main; sys.exit(main())', *argv],
                   cwd=code, capture_output=True, env={**os.environ, 'PYTHONPATH': str(code), 'OMP_NUM_THREADS': '1'}, timeout=120)
    return time.perf_counter() - t

def tree_at(rev:str)->Path:
    "The package at commit `rev`, unpacked into a temporary folder."
    d = Path(tempfile.mkdtemp(prefix='reid_nb_cli_'))
    tar = subprocess.run(['git', 'archive', rev, 'reid_nb'], cwd=REPO, capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(tar)).extractall(d)
    return d

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--compare', help='also time the code of this git commit, in the same run')
    p.add_argument('--repeats', type=int, default=3, help='runs per case; the fastest is kept')
    a = p.parse_args()
    sys.path.insert(0, str(REPO))
    from reid_nb.cli import COMMANDS
    trees = {'this tree': REPO, **({a.compare: tree_at(a.compare)} if a.compare else {})}
    rows = [('reid-nb', 'help', ['--help'])] + [(c, k, [c, *v]) for c in COMMANDS for k, v in CASES.items()]
    res = {name: {f"{c} {k}": min(run_once(code, argv) for _ in range(a.repeats)) for c, k, argv in rows} for name, code in trees.items()}
    names = list(trees)
    print('| command | case | ' + ' | '.join(f'{n} (s)' for n in reversed(names)) + ' |')
    print('|---|---|' + '---:|' * len(names))
    for c, k, _ in rows: print(f'| {c} | {k} | ' + ' | '.join(f"{res[n][f'{c} {k}']:.2f}" for n in reversed(names)) + ' |')
    save_json({**provenance(__file__), 'seconds': res}, REPO/'bench'/'results'/'cli_startup.json')

if __name__ == '__main__': main()
