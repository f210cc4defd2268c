"""The documentation site, opened in a real browser: `python tools/build_docs.py` builds it (here, when no build
exists), a local HTTP server serves it, headless Chromium loads the home page and two chapters and checks what a
reader would see: the title, the navigation, the API signatures, a plot, maths typeset, no raw `#|` directives.
Screenshots are kept next to the build (`_build/docs/screenshots/*.png`, not in git).

Needs Debian's `chromium` + `chromium-driver` and the `selenium` package; skipped without them, unless
REID_NB_REQUIRE_BROWSER=1 (set by .ci/run, which installs them), where their absence fails.
REID_NB_DOCS=<folder> tests an existing build instead of the default `_build/docs`."""
import functools, http.server, json, os, re, shutil, subprocess, sys, threading
from pathlib import Path
import pytest
from browser import headless_chromium, skip_without_browser   # the browser set-up tests/test_serve.py shares

ROOT = Path(__file__).resolve().parents[1]
DOCS = Path(os.environ.get('REID_NB_DOCS', ROOT/'_build'/'docs'))
HTML = DOCS/'html'

def _chapter(pattern:str, skip:tuple=())->str:
    "The first chapter (in file order) whose HTML matches `pattern`: chapters are found, not named, so renames do not matter."
    for p in sorted(HTML.glob('*.html')):
        if p.stem not in ('index', 'search', 'genindex', 'zoo', *skip) and re.search(pattern, p.read_text(errors='ignore')): return p.stem
    pytest.fail(f'no chapter matches {pattern!r}')

@pytest.fixture(scope='module')
def site():
    skip_without_browser()
    if not (HTML/'index.html').exists():
        r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(DOCS)], cwd=ROOT)
        assert r.returncode == 0, 'the docs build failed'
    shutil.rmtree(DOCS/'screenshots', ignore_errors=True)   # this run's screenshots only
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(HTML))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}'
    srv.shutdown()

@pytest.fixture(scope='module')
def browser(site, tmp_path_factory):
    d = headless_chromium(tmp_path_factory.mktemp("chromium"))
    yield d
    d.quit()

def _mathjax_local()->bool:
    b = DOCS/'build.json'
    return b.exists() and json.loads(b.read_text()).get('mathjax') == 'local'

def _open(browser, url:str, shot:str):
    "Load a page, wait for MathJax when the page has maths, save a screenshot of the whole page."
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script('return document.readyState') == 'complete')
    if browser.execute_script('return document.querySelectorAll(".math").length') and _mathjax_local():
        WebDriverWait(browser, 60).until(lambda d: d.execute_script(
            'return window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0 '
            '&& document.querySelectorAll(".MathJax_Processing").length === 0 && document.querySelectorAll(".MJX_Assistive_MathML, .mjx-chtml").length > 0'))
    out = DOCS/'screenshots'; out.mkdir(exist_ok=True)
    h = browser.execute_script('return Math.min(document.body.scrollHeight, 12000)')
    browser.set_window_size(1280, max(h, 800))
    browser.save_screenshot(str(out/f'{shot}.png'))
    browser.set_window_size(1280, 1600)

_PROSE_JS = """const a = document.querySelector('article, main, .bd-article') || document.body;
const c = a.cloneNode(true); c.querySelectorAll('pre, code, script, style, .MathJax_Preview, .MJX_Assistive_MathML').forEach(e => e.remove());
return c.innerText;"""

def _common_checks(browser, page:str):
    title = browser.title
    assert 'reid_nb' in title, (page, title)
    n_nav = browser.execute_script("return document.querySelectorAll('nav.bd-docs-nav a.reference.internal, #bd-docs-nav a.reference.internal').length")
    n_nbs = len([p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.'))])
    assert n_nav >= n_nbs - 1, f"{page}: navigation has {n_nav} links for {n_nbs} notebooks"
    text = browser.execute_script('return document.body.innerText')
    assert not re.search(r'(?m)^\s*#\|', text), f"{page}: a raw `#|` directive is shown"
    assert 'show_doc(' not in text, f"{page}: a show_doc call is shown instead of its output"
    return text

def test_home_page(site, browser):
    _open(browser, f'{site}/index.html', 'index')
    text = _common_checks(browser, 'index')
    assert 'A literate toolbox for re-identification' in text
    assert browser.find_elements('css selector', 'article h1')[0].text.strip().startswith('reid_nb')
    # the home page's saved outputs are shown (the quick start's results table)
    assert browser.execute_script("return document.querySelectorAll('.cell_output').length") > 0

def test_chapter_with_plots_and_signatures(site, browser):
    PLOT_PAGE = _chapter(r'<img [^>]*src="_images/')   # a chapter with plots in its saved outputs
    _open(browser, f'{site}/{PLOT_PAGE}.html', PLOT_PAGE)
    _common_checks(browser, PLOT_PAGE)
    imgs = browser.execute_script("return Array.from(document.images).filter(i => i.src.includes('_images/')).map(i => [i.src, i.complete, i.naturalWidth])")
    assert imgs and all(c and w > 0 for _, c, w in imgs), f"plots not loaded: {imgs}"
    sigs = browser.execute_script("return Array.from(document.querySelectorAll('.cell_output pre')).map(e => e.innerText).filter(t => /^def \\w+\\(|^class \\w+/m.test(t))")
    assert sigs, 'no API signature (show_doc output) on the page'

def test_chapter_with_maths(site, browser):
    MATH_PAGE = _chapter(r'class="math notranslate', skip=(_chapter(r'<img [^>]*src="_images/'),))   # another, with formulas
    _open(browser, f'{site}/{MATH_PAGE}.html', MATH_PAGE)
    _common_checks(browser, MATH_PAGE)
    assert browser.execute_script("return document.querySelectorAll('.math').length") > 0, 'the chapter has no formulas'
    prose = browser.execute_script(_PROSE_JS)
    if _mathjax_local():
        assert browser.execute_script("return document.querySelectorAll('.mjx-chtml').length") > 0, 'MathJax did not typeset'
        raw = re.findall(r'\$[^$\s][^$\n]{0,80}\$|\\\(|\\\[', prose)
        assert not raw, f"untypeset maths: {raw[:5]}"
    # a signature from show_doc, with its anchor, as nbdev's API links expect
    assert browser.execute_script("return document.querySelectorAll('.cell_output span[id]').length") > 0

def test_search(site, browser):
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(f'{site}/search.html?q=rerank')
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.querySelectorAll('ul.search li').length") > 0)
    links = browser.execute_script("return Array.from(document.querySelectorAll('ul.search li a')).map(a => a.getAttribute('href'))")
    assert links and all((HTML/l.split('#')[0].split('?')[0]).exists() for l in links), links

def test_zoo_page(site, browser):
    "The model zoo's markdown outputs render as tables: one per dataset folder of configs/, plus the paper's Table 1."
    _open(browser, f'{site}/zoo.html', 'zoo')
    _common_checks(browser, 'zoo')
    n_tables = browser.execute_script("return document.querySelectorAll('.cell_output table').length")
    n_datasets = len([p for p in (ROOT/'configs').iterdir() if p.is_dir()])
    assert n_tables >= n_datasets + 1, (n_tables, n_datasets)
    assert '|:--' not in browser.execute_script(_PROSE_JS), 'a markdown table was shown as text'

def test_warning_classification():
    "Which Sphinx warnings fail the build: all but the layout remarks listed in tools/build_docs.py's BENIGN."
    sys.path.insert(0, str(ROOT/'tools'))
    from build_docs import sphinx_warnings
    log = '\n'.join(['/b/src/core.ipynb:3: WARNING: image file not readable: x.png [image.not_readable]',
                     '/b/src/zoo.ipynb:1: WARNING: Non-consecutive header level increase; H1 to H3 [myst.header]',
                     '\x1b[91m/b/src/x.ipynb:2: WARNING: Unknown directive type: \'foo\' [myst.directive_unknown]\x1b[39;49;00m',
                     'reading sources... [ 50%] core', '/b/src/y.ipynb: ERROR: Notebook JSON is invalid'])
    breaking, benign = sphinx_warnings(log)
    assert [w.split(':')[0] for w in breaking] == ['/b/src/core.ipynb', '/b/src/x.ipynb', '/b/src/y.ipynb'], breaking
    assert len(benign) == 1 and 'header level' in benign[0]

def test_ci_builds_the_docs():
    "The build command is in README.md and .ci/run runs it before the tests."
    ci, readme = (ROOT/'.ci'/'run').read_text(), (ROOT/'README.md').read_text()
    assert "DOCS_CMD='python tools/build_docs.py'" in ci and 'python tools/build_docs.py' in readme
    assert ci.index('eval "$DOCS_CMD"') < ci.index('eval "$TEST_CMD"')
