"""The notebooks as documents: nbdev's docs processor executes every cell that holds an import, so such a cell must
hold imports only (a cell mixing an import with test code breaks the docs build); and the chapters speak to a reader
of the library, not about the machine they were written on."""
import ast, re
from pathlib import Path
import nbformat, pytest

NBS = sorted((Path(__file__).resolve().parents[1]/'nbs').glob('*.ipynb'))

def _code(cell)->str:
    "The cell's Python, without directives and IPython magics."
    return '\n'.join(l for l in cell.source.splitlines() if not l.lstrip().startswith(('#|', '%', '!')))

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_import_cells_hold_only_imports(nb):
    bad = []
    for i, cell in enumerate(nbformat.read(nb, as_version=4).cells):
        if cell.cell_type != 'code' or re.search(r'^#\|\s*(export|exports|default_exp)', cell.source, re.M): continue
        tree = ast.parse(_code(cell))
        if not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body): continue
        other = [type(n).__name__ for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
        if other: bad.append((i, cell.source.splitlines()[0][:60], other[:3]))
    assert not bad, f"{nb.name}: cells mixing imports with other code (index, first line, other statements): {bad}"

_MACHINE = re.compile(r'shared machine\b|2-core|two cores|busy machine|on a busy|load average|our machine|my machine|this dev', re.I)

def _prose(cell)->str:
    "What a reader reads: markdown, and the comments of code cells (messages a program prints to its user are not notes)."
    if cell.cell_type == 'markdown': return cell.source
    return '\n'.join(l.split('#', 1)[1] for l in cell.source.splitlines() if '#' in l and not l.lstrip().startswith('#|'))

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_no_notes_about_a_development_machine(nb):
    hits = [(i, m.group(0)) for i, c in enumerate(nbformat.read(nb, as_version=4).cells) for m in _MACHINE.finditer(_prose(c))]
    assert not hits, f"{nb.name}: {hits}"
