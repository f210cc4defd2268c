#!/usr/bin/env python
"""Build the documentation site from the notebooks with pip-installable tools only (no Quarto).

    python tools/build_docs.py                 # -> _build/docs/html/index.html
    python tools/build_docs.py --out DIR --workers 2 --no-strict

1. Every notebook in nbs/ (nbdev's listing: names starting with `_` or `.` are skipped) goes through
   nbdev's own docs processors (`nbdev.processors.FilterDefaults`, what `nbdev-docs` runs before Quarto):
   `show_doc` cells added after exported definitions and executed for their signatures, `#| hide` and
   `#| export` cells dropped, `#| exports` shown, links to the API added. Nothing else is executed: the
   pages show the outputs saved in the notebooks.
2. What Quarto would read is turned into what Jupyter Book reads: the title/description front matter becomes
   the page's heading, Quarto's cell options become myst-nb cell tags (`echo: false` -> remove-input,
   `output: false` -> remove-output, `include: false` -> remove-cell, `code-fold: true` -> hide-input (folded),
   `column: page` -> full-width), every `#|` line is removed, links to
   the published site become links within this one. Pages are named like nbdev's (`00_core` -> `core.html`).
3. Jupyter Book 1 (Sphinx + myst-nb, no execution) renders `_build/docs/html`; its table of contents is the
   nbs/ listing in order, so a new notebook appears without editing anything here. Maths uses Debian's MathJax
   (package libjs-mathjax) copied into the site when it is installed, else MathJax from its CDN.

The build fails (exit 1) when a notebook cannot be processed (an error in a cell nbdev runs for `show_doc`)
or when Sphinx warns about a broken page: every Sphinx warning counts, except those in BENIGN below (layout
remarks that leave the page whole). Warnings go to `<out>/warnings.txt`, a summary to `<out>/build.json`.
"""
import argparse, hashlib, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATHJAX_DIR = Path('/usr/share/javascript/mathjax')  # Debian's libjs-mathjax (MathJax 2.7)
MATHJAX_PARTS = ['MathJax.js', 'config/TeX-AMS_CHTML.js', 'extensions', 'jax/input/TeX', 'jax/output/CommonHTML',
                 'jax/element', 'jax/input/MathML', 'fonts/HTML-CSS/TeX/woff', 'localization/en']

# Sphinx warnings that do not break a page (matched against the warning's text). Everything else fails the build:
# a missing image, an unknown directive or role, a cell output myst-nb cannot render, a broken cross-reference,
# a page outside the table of contents, invalid notebook JSON, a parse error in markdown.
BENIGN = [
    r'Non-consecutive header level increase',   # a chapter that goes from ## to #### (myst.header): only the outline is uneven
    r'Document headings start at H[2-6]',        # same, for a show_doc heading that opens a section
]

# ------------------------------------------------------------------------------------------------ step 1
def notebooks(nbs:Path)->list[Path]:
    "The notebooks nbdev documents, in listing order (`_*` and hidden files skipped)."
    return sorted(p for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))

def _package_digest()->bytes:
    "The package the notebooks document and nbdev's version: processed copies are stale when either changes."
    import nbdev
    h = hashlib.sha256(nbdev.__version__.encode())
    for f in sorted((ROOT/'reid_nb').rglob('*.py')): h.update(f.read_bytes())
    return h.digest()

def _digest(path:Path, package:bytes)->str:
    "A key for the processed copy of one notebook."
    return hashlib.sha256(path.read_bytes() + package).hexdigest()[:16]

def _process(args)->str|None:
    "Process one notebook in a fresh Python (`show_doc` cells execute the notebook's imports and exports)."
    r = subprocess.run([sys.executable, __file__, '--process-one', *args], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, 'IN_TEST': '1', 'MPLBACKEND': 'Agg'})
    return None if r.returncode == 0 else f"{Path(args[0]).name}:\n{(r.stdout + r.stderr)[-3000:]}"

def _process_one(src:Path, dst:Path)->int:
    "nbdev's docs processors on one notebook."
    import warnings
    warnings.filterwarnings('ignore')
    import matplotlib; matplotlib.use('Agg')
    from fastcore.nbio import read_nb, write_nb
    from nbdev.processors import FilterDefaults
    nb = read_nb(src)
    FilterDefaults()(nb)
    write_nb(nb, str(dst) + '.tmp')
    os.replace(str(dst) + '.tmp', dst)
    return 0

# ------------------------------------------------------------------------------------------------ step 2
_QUARTO_TAGS = {('echo', 'false'): 'remove-input', ('output', 'false'): 'remove-output', ('include', 'false'): 'remove-cell',
                ('code-fold', 'true'): 'hide-input', ('column', 'page'): 'full-width', ('column', 'screen'): 'full-width'}
_re_dir = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_re_srclink = re.compile(r'\[source\]\((\S+?)\)\{[^}]*\}')
_re_sdhead = re.compile(r'^(#{2,4}) (\S+)\s*$', re.M)

def slug(s:str)->str:
    "Pandoc's (Quarto's) heading id, which nbdev's API links point to: lower case, spaces to dashes, punctuation gone."
    return re.sub(r'[^\w.\-]', '', re.sub(r'\s+', '-', s.strip().lower()))

def _page_links(text:str, site:str)->str:
    "Links to pages of the published site become links to this build's pages."
    return re.sub(re.escape(site.rstrip('/')) + r'/([\w.\-]+\.html)', r'\1', text) if site else text

def to_myst(nb:dict, site:str)->dict:
    "A processed nbdev notebook (Quarto's dialect) as a notebook myst-nb renders the same way."
    cells, fm = [], {}
    for c in nb['cells']:
        src = c.get('source')
        if isinstance(src, list): src = ''.join(src)
        if src is None or (not src.strip() and c['cell_type'] != 'code'): continue
        if c['cell_type'] == 'raw':
            m = re.match(r'^---\n(.*?)\n---', src, re.S)
            if m:
                import yaml
                fm.update(yaml.safe_load(m.group(1)) or {}); continue
        if c['cell_type'] == 'markdown':
            c['source'] = _page_links(src, site)
        elif c['cell_type'] == 'code':
            tags, body = set(c.get('metadata', {}).get('tags', [])), []
            for line in src.splitlines():
                m = _re_dir.match(line)
                if m: tags |= {_QUARTO_TAGS[k] for k in [(m.group(1), m.group(2).lower())] if k in _QUARTO_TAGS}
                else: body.append(line)
            c['source'] = '\n'.join(body).strip('\n')
            if not c['source'].strip() and not c.get('outputs'): continue
            if not c['source'].strip(): tags.add('remove-input')
            c.setdefault('metadata', {})['tags'] = sorted(tags)
            sd = c['source'].lstrip().startswith('show_doc(')
            for o in c.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md is None: continue
                md = ''.join(md) if isinstance(md, list) else md
                if sd:  # a signature: the anchor nbdev's API links point to, and a plain source link
                    md = _re_sdhead.sub(lambda m: f'<span id="{slug(m.group(2))}"></span>\n\n{m.group(1)} {m.group(2)}', _srclink(md))
                o['data']['text/markdown'] = _page_links(md, site)
        cells.append(c)
    head = f"# {fm.get('title', 'Untitled')}\n"
    if fm.get('description'): head += f"\n> {fm['description']}\n"
    cells.insert(0, {'cell_type': 'markdown', 'metadata': {}, 'source': head})
    for i, c in enumerate(cells): c['id'] = f'c{i}'
    nb['cells'], nb['nbformat'], nb['nbformat_minor'] = cells, 4, 5
    nb['metadata'] = {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
                      'language_info': {'name': 'python', 'pygments_lexer': 'ipython3'}}
    return nb

def _srclink(md:str)->str:
    "show_doc's Quarto link attributes `[source](url){...}` as a plain HTML link floated right."
    md = re.sub(r'^---\s*\n', '', md.lstrip())  # the rule Quarto draws above each signature: the heading separates them here
    return _re_srclink.sub(lambda m: f'<a class="reference external sourcelink" href="{m.group(1)}" style="float:right; font-size:smaller">source</a>', md)

# ------------------------------------------------------------------------------------------------ step 3
def write_book(src:Path, pages:list[str], title:str, mathjax:bool, repo:str):
    "Jupyter Book's _config.yml and _toc.yml (the chapters in nbs/ order)."
    import yaml
    toc = {'format': 'jb-book', 'root': 'index', 'chapters': [{'file': p} for p in pages if p != 'index']}
    sphinx = {'html_show_copyright': False, 'myst_all_links_external': True, 'suppress_warnings': ['mystnb.unknown_mime_type'],
              'nb_merge_streams': True, 'nb_render_markdown_format': 'myst', 'myst_dmath_double_inline': True,
              'myst_dmath_allow_space': False, 'myst_dmath_allow_digits': False,  # pandoc's (Quarto's) rules for $...$
              'html_css_files': ['reid_nb.css']}
    if mathjax: sphinx.update(mathjax_path='mathjax/MathJax.js?config=TeX-AMS_CHTML', mathjax3_config=None,
                              mathjax2_config={'tex2jax': {'inlineMath': [['\\(', '\\)']], 'displayMath': [['\\[', '\\]']],
                                                           'processEscapes': True,
                                                           # myst-nb marks pages mathjax_ignore and maths `math`, as for MathJax 3
                                                           'processClass': 'tex2jax_process|mathjax_process|math|output_area',
                                                           'ignoreClass': 'tex2jax_ignore|mathjax_ignore'}, 'showMathMenu': False,
                                                'menuSettings': {'collapsible': False, 'autocollapse': False, 'explorer': False}})
    cfg = {'title': title, 'author': 'reid_nb developers', 'only_build_toc_files': True,
           'execute': {'execute_notebooks': 'off'},
           'parse': {'myst_enable_extensions': ['dollarmath', 'amsmath', 'colon_fence', 'html_image', 'linkify', 'substitution']},
           'html': {'use_repository_button': bool(repo), 'home_page_in_navbar': True},
           'repository': {'url': repo, 'branch': 'main', 'path_to_book': 'nbs'} if repo else {},
           'sphinx': {'config': sphinx}}
    (src/'_config.yml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    (src/'_toc.yml').write_text(yaml.safe_dump(toc, sort_keys=False))
    (src/'_static').mkdir(exist_ok=True)
    (src/'_static'/'reid_nb.css').write_text('.sourcelink { margin-left: 1em; }\n.cell_output table { font-size: 0.85em; }\n')

def copy_mathjax(static:Path):
    "The parts of Debian's MathJax 2.7 the CommonHTML output needs (about 5 MB), copied beside the site's other scripts."
    for part in MATHJAX_PARTS:
        s, d = MATHJAX_DIR/part, static/'mathjax'/part
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir(): shutil.copytree(s, d, dirs_exist_ok=True)
        elif s.exists(): shutil.copy2(s, d)

def sphinx_warnings(log:str)->tuple[list[str], list[str]]:
    "Split Sphinx's warnings into (breaking, benign)."
    ws = [l for l in re.sub(r'\x1b\[[0-9;]*m', '', log).splitlines() if 'WARNING:' in l or 'ERROR:' in l or 'CRITICAL:' in l]
    benign = [w for w in ws if any(re.search(p, w) for p in BENIGN)]
    return [w for w in ws if w not in benign], benign

# ------------------------------------------------------------------------------------------------ main
def main(argv=None)->int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--process-one']: return _process_one(Path(argv[1]), Path(argv[2]))
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--nbs', default=str(ROOT/'nbs'))
    p.add_argument('--out', default=str(ROOT/'_build'/'docs'))
    p.add_argument('--workers', type=int, default=2, help='notebooks processed at once')
    p.add_argument('--no-strict', action='store_true', help='report breaking Sphinx warnings without failing')
    p.add_argument('--cdn-mathjax', action='store_true', help="use MathJax's CDN even where libjs-mathjax is installed")
    a = p.parse_args(argv)
    t0 = time.time()
    nbs, out = Path(a.nbs), Path(a.out)
    src, cache = out/'src', out/'proc'
    for d in (src, cache): d.mkdir(parents=True, exist_ok=True)

    from nbdev.config import get_config, nbpath2html
    cfg = get_config(path=ROOT)
    site = f"{cfg.get('doc_host', '').rstrip('/')}{cfg.get('doc_baseurl', '')}" if cfg.get('doc_host') else ''

    nbl = notebooks(nbs)
    if not (nbs/'index.ipynb').exists(): print(f'{nbs} has no index.ipynb (the home page)', file=sys.stderr); return 1
    for f in nbs.rglob('*'):  # pictures and other files the notebooks link to, as nbdev's Quarto build copies them
        rel = f.relative_to(nbs)
        if f.is_file() and f.suffix not in ('.ipynb', '.yml', '.yaml') and not any(o.startswith(('.', '_')) for o in rel.parts):
            (src/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, src/rel)
    jobs, names, keys, package = [], {}, {}, _package_digest()
    for nb in nbl:
        names[nb] = nbpath2html(nb).stem   # 00_core.ipynb -> core, like nbdev's Quarto site
        keys[nb] = key = cache/f"{names[nb]}.{_digest(nb, package)}.ipynb"
        if not key.exists(): jobs.append((str(nb), str(key)))
    print(f"== processing {len(jobs)} of {len(nbl)} notebooks with nbdev (others cached)", flush=True)
    errors = []
    if jobs:
        with ThreadPoolExecutor(max(1, min(a.workers, len(jobs)))) as ex:
            errors = [e for e in ex.map(_process, jobs) if e]
    if errors:
        print('notebook processing failed:\n' + '\n'.join(errors), file=sys.stderr); return 1
    t_proc = time.time() - t0

    for old in src.glob('*.ipynb'): old.unlink()
    pages = []
    for nb in nbl:
        key = keys[nb]
        for stale in cache.glob(f"{names[nb]}.*.ipynb"):
            if stale != key: stale.unlink()
        d = to_myst(json.loads(key.read_text()), site)
        (src/f"{names[nb]}.ipynb").write_text(json.dumps(d, indent=1))
        pages.append(names[nb])
    mathjax = MATHJAX_DIR.joinpath('MathJax.js').exists() and not a.cdn_mathjax
    write_book(src, pages, cfg.get('title', 'docs'), mathjax, cfg.get('git_url', ''))

    print(f"== rendering {len(pages)} pages with Jupyter Book (maths: {'local MathJax' if mathjax else 'MathJax CDN'})", flush=True)
    html = out/'html'
    if html.exists(): shutil.rmtree(html)
    r = subprocess.run([sys.executable, '-c', 'from jupyter_book.cli.main import main; main()', 'build', str(src), '--path-output', str(out/'jb'), '--builder', 'html', '--all'],
                       capture_output=True, text=True)
    log = r.stdout + r.stderr
    (out/'jupyter-book.log').write_text(log)
    breaking, benign = sphinx_warnings(log)
    (out/'warnings.txt').write_text('\n'.join(['# breaking'] + breaking + ['# benign'] + benign) + '\n')
    if r.returncode or not (out/'jb'/'_build'/'html'/'index.html').exists():
        print(log[-4000:], file=sys.stderr); print('Jupyter Book failed', file=sys.stderr); return 1
    shutil.copytree(out/'jb'/'_build'/'html', html)
    if mathjax: copy_mathjax(html/'_static')  # after Sphinx: Jupyter Book would load every .js under _static on every page
    n_pages = len([p for p in pages if (html/f'{p}.html').exists()])
    summary = {'pages': n_pages, 'notebooks': len(nbl), 'seconds': round(time.time() - t0, 1), 'processing_seconds': round(t_proc, 1),
               'mathjax': 'local' if mathjax else 'cdn', 'breaking_warnings': len(breaking), 'benign_warnings': len(benign),
               'index': str(html/'index.html')}
    (out/'build.json').write_text(json.dumps(summary, indent=1))
    for w in breaking: print('BREAKING', w, file=sys.stderr)
    print(f"== {n_pages} pages in {html} ({summary['seconds']} s; {len(breaking)} breaking / {len(benign)} benign warnings, see {out/'warnings.txt'})")
    if n_pages != len(nbl): print(f"missing pages: {sorted(set(pages) - {p.stem for p in html.glob('*.html')})}", file=sys.stderr); return 1
    return 1 if breaking and not a.no_strict else 0

if __name__ == '__main__': sys.exit(main())
