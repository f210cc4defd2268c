"""The seams of the package, checked on its source: FastReID's config keys are read at one edge."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1]/'reid_nb'

def _imports(path:Path)->set:
    "Modules a file imports (relative imports resolved within reid_nb), at any depth (lazy imports too)."
    out, pkg = set(), '.'.join(path.relative_to(PKG.parent).with_suffix('').parts[:-1])
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import): out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = pkg.rsplit('.', n.level - 1)[0] if n.level > 1 else pkg if n.level else ''
            out.add(f"{base}.{n.module}" if n.level and n.module else base if n.level else n.module)
    return out

def test_only_the_fastreid_edge_and_the_cli_read_configs():
    readers = sorted(str(p.relative_to(PKG)) for p in PKG.rglob('*.py') if p.name != '_modidx.py' and 'reid_nb.config' in _imports(p))
    assert readers == ['cli.py', 'fastreid.py'], readers

def test_pass_through_arguments_are_visible():
    "Functions that pass **kwargs on show the real arguments (fastcore's @delegates)."
    import inspect
    from reid_nb.data.loaders import reid_dataloaders
    from reid_nb.backbones import build_backbone
    from reid_nb.learner import reid_learner
    for f, shown in [(reid_dataloaders, ('flip_prob', 'rea_prob', 'crop_size')), (build_backbone, ('nl_inter_channels', 'ibn_stages')),
                     (reid_learner, ('pool', 'embedding_dim', 'cls_type'))]:
        params = inspect.signature(f).parameters
        assert all(k in params for k in shown), (f.__name__, list(params))

# --- the import graph: chapters in dependency order, no circles, no private names across modules ---------------------
import re

ROOT = PKG.parent

def _modules()->dict:
    "reid_nb module name -> (path, chapter number and letter from its 'File to edit' header)."
    out = {}
    for p in sorted(PKG.rglob('*.py')):
        if p.name in ('_modidx.py', '__init__.py'): continue
        m = re.search(r'File to edit: [./]*nbs/(\d+)([a-z]?)_', p.read_text())
        out['.'.join(p.relative_to(ROOT).with_suffix('').parts)] = (p, (int(m[1]), m[2]) if m else None)
    return out

def _edges(path:Path, mods)->list:
    "(module imported, name taken from it or None) for every reid_nb import in a file, at any depth (lazy imports too)."
    cur = '.'.join(path.relative_to(ROOT).with_suffix('').parts) if path.is_relative_to(PKG) else ''
    out = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import): out += [(a.name, None) for a in n.names if a.name in mods]
        elif isinstance(n, ast.ImportFrom):
            mod = '.'.join(cur.split('.')[:-n.level] + ([n.module] if n.module else [])) if n.level else (n.module or '')
            if not mod.startswith('reid_nb'): continue
            for a in n.names:
                if f'{mod}.{a.name}' in mods: out.append((f'{mod}.{a.name}', None))   # `from reid_nb.data import datasets`
                elif mod in mods: out.append((mod, a.name))
    return out

def _graph():
    mods = _modules()
    return mods, {m: {t for t, _ in _edges(p, mods) if t != m} for m, (p, _) in mods.items()}

def test_no_import_circles():
    mods, g = _graph()
    def reach(a):
        seen, todo = set(), list(g[a])
        while todo:
            b = todo.pop()
            if b not in seen: seen.add(b); todo += g.get(b, [])
        return seen
    circles = sorted(m for m in g if m in reach(m))
    assert not circles, f"modules in an import circle: {circles}"

def test_chapters_import_only_earlier_chapters():
    mods, g = _graph()
    assert all(ch is not None for _, ch in mods.values()), [m for m, (_, ch) in mods.items() if ch is None]
    later = sorted(f"{a} ({mods[a][1][0]}{mods[a][1][1]}) -> {b} ({mods[b][1][0]}{mods[b][1][1]})"
                   for a, bs in g.items() for b in bs if mods[b][1] > mods[a][1])
    assert not later, f"imports of a later chapter: {later}"

def test_no_private_names_across_modules():
    "A helper two modules need is public: no `_name` is imported from another reid_nb module, by the package or the benches."
    mods = _modules()
    files = [p for p, _ in mods.values()] + sorted((ROOT/'bench').glob('*.py'))
    private = [f"{p.relative_to(ROOT)} <- {m}.{n}" for p in files for m, n in _edges(p, mods) if n and n.startswith('_')]
    for p in sorted((ROOT/'bench').glob('*.py')):  # and no bench takes a private name from another bench
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and (ROOT/'bench'/f'{n.module}.py').exists():
                private += [f"{p.relative_to(ROOT)} <- bench.{n.module}.{a.name}" for a in n.names if a.name.startswith('_') and n.module != '_common']
    assert not private, f"private names imported across modules: {private}"

def test_cli_defaults_are_the_functions():
    "Every `reid-nb` option is a parameter of its command's function, with that parameter's default (a default is written once)."
    import argparse, inspect
    from reid_nb.cli import COMMANDS, build_parser
    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subs) == set(COMMANDS), (sorted(subs), sorted(COMMANDS))
    for cmd, (fn, *_) in COMMANDS.items():
        params = {k: p for k, p in inspect.signature(fn).parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        opts = {a.dest: a for a in subs[cmd]._actions if a.dest != 'help'}
        assert set(opts) == set(params), (cmd, sorted(set(opts) ^ set(params)))   # every parameter is an option, and only those
        for k, p in params.items():
            a = opts[k]
            if p.default is p.empty: assert a.required or not a.option_strings, (cmd, k)   # no default: the user must give it
            else: assert a.default == p.default and type(a.default) is type(p.default), (cmd, k, a.default, p.default)
