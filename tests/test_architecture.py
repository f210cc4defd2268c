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
