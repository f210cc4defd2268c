"""tests/conftest.py: test modules that import a FastReID-era package load, and `collections` is left as it was."""
import collections, os, shutil, subprocess, sys
from pathlib import Path

def test_collections_untouched():
    "Collection (every test module's import, reference packages included) is over: no old name is left in `collections`."
    assert [n for n in ('Mapping', 'MutableMapping', 'Sequence', 'Iterable', 'Callable') if n in vars(collections)] == []

def test_conftest_imports_test_modules_under_the_shim(tmp_path):
    "A pytest run over two folders of the same test, one with our conftest.py: only that one imports `from collections import Mapping`."
    test = ("import collections, collections.abc\nimport {mod}\n"
            "def test_ref():\n    assert {mod}.KIND is collections.abc.Mapping and 'Mapping' not in vars(collections)\n")
    for sub in ('with_conftest', 'without'):
        d = tmp_path/sub; d.mkdir()
        (d/f'ref_{sub}.py').write_text('from collections import Mapping\nKIND = Mapping\n')   # as FastReID 1.4 does
        (d/f'test_{sub}.py').write_text(test.format(mod=f'ref_{sub}'))
    shutil.copy(Path(__file__).with_name('conftest.py'), tmp_path/'with_conftest')
    r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rA', '--continue-on-collection-errors', str(tmp_path)], cwd=tmp_path,
                       capture_output=True, text=True, env=os.environ)
    out = r.stdout + r.stderr
    assert 'PASSED with_conftest/test_with_conftest.py::test_ref' in out, out
    assert 'ERROR without/test_without.py' in out and "cannot import name 'Mapping'" in out, out
