"README.md is kept by hand in step with nbs/index.ipynb: every cell of the notebook appears in it, in order."
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]

def test_readme_follows_index():
    readme = (ROOT/'README.md').read_text()
    nb = nbformat.read(ROOT/'nbs'/'index.ipynb', as_version=4)
    pos = 0
    for i, cell in enumerate(nb.cells):
        src = cell.source.strip()
        at = readme.find(src, pos)
        assert at >= 0, f"README.md lacks (or misorders) cell {i} of nbs/index.ipynb: {src[:80]!r}"
        pos = at + len(src)

def test_readme_shows_setup_and_test_commands():
    readme = (ROOT/'README.md').read_text()
    ci = (ROOT/'.ci'/'run').read_text()
    for cmd in ('pip install -e ".[dev]"', 'nbdev-test --n-workers 1 && pytest tests'):
        assert cmd in readme and cmd in ci, cmd

def test_readme_sections_once():
    "Each `## ` section of README.md appears once (its Data section was printed twice)."
    heads = [l for l in (ROOT/'README.md').read_text().splitlines() if l.startswith('## ')]
    assert len(heads) == len(set(heads)), sorted(h for h in heads if heads.count(h) > 1)
