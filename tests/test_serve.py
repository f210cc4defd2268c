"""The search service as a user runs it (`reid_nb.serve`, `reid-nb serve`): a real server process on 127.0.0.1 killed
with SIGKILL in the middle of bursts of adds from several threads and restarted (every acknowledged add and delete is
there, nothing half-written is), the operator's page in headless Chromium, and the command line's defaults.
In-process endpoint tests (every bad input) are in nbs/45_serve.ipynb. Tiny model (timm's test_resnet at 32x16)."""
import inspect, io, json, os, signal, socket, subprocess, sys, threading, time
from pathlib import Path
import numpy as np
import pytest

pytest.importorskip('fastapi'); pytest.importorskip('uvicorn'); httpx = pytest.importorskip('httpx')
from PIL import Image
from browser import SCREENSHOTS, headless_chromium, skip_without_browser

ROOT = Path(__file__).resolve().parents[1]
TOKEN = 'test-token-0123456789abcdef'
AUTH = {'Authorization': f'Bearer {TOKEN}'}

def png(seed:int, hw=(40, 20))->bytes:
    "A distinct random crop."
    a = np.random.default_rng(seed).integers(0, 255, (*hw, 3), dtype=np.uint8)
    a[: hw[0] // 2] = a[: hw[0] // 2] // 4 + seed * 37 % 200
    b = io.BytesIO(); Image.fromarray(a).save(b, 'PNG'); return b.getvalue()

def free_port()->int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def model(tmp_path_factory):
    import torch
    from reid_nb.models import build_model, save_reid_model
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp('serve')/'tiny.pth'
    save_reid_model(p, build_model('test_resnet', num_classes=4, pretrained=False).eval(), size=(32, 16))
    return p

class Server:
    "`reid-nb serve` in a child process on a free loopback port."
    def __init__(self, weights, gallery, token_file, *extra):
        self.port = free_port(); self.url = f'http://127.0.0.1:{self.port}'
        env = {**os.environ, 'PYTHONPATH': f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", 'OMP_NUM_THREADS': '1'}
        self.p = subprocess.Popen([sys.executable, '-m', 'reid_nb.cli', 'serve', '--weights', str(weights), '--gallery', str(gallery),
                                   '--port', str(self.port), '--token-file', str(token_file), *extra],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.time()
        while time.time() - t0 < 90:
            if self.p.poll() is not None: pytest.fail(f'the server exited ({self.p.returncode}): {self.p.stdout.read()}')
            try:
                if httpx.get(f'{self.url}/health', timeout=1).status_code == 200: return
            except httpx.HTTPError: time.sleep(0.2)
        self.kill(); pytest.fail('the server did not answer /health within 90 s')
    def kill(self):
        self.p.send_signal(signal.SIGKILL); self.p.wait(10)
        return self.p.stdout.read()
    def stop(self):
        self.p.send_signal(signal.SIGINT); self.p.wait(30)
        return self.p.stdout.read()

def test_cli_defaults_are_the_apps():
    "`reid-nb serve`'s defaults are `reid_nb.serve.app`'s (a default written twice must agree)."
    from reid_nb.cli import serve_gallery
    from reid_nb.serve import app, run
    cli = inspect.signature(serve_gallery).parameters
    for f in (app, run):
        for k, p in inspect.signature(f).parameters.items():
            if k in cli and p.default is not p.empty and k != 'cors': assert cli[k].default == p.default, (f.__name__, k)
    assert cli['cors'].default is None and inspect.signature(app).parameters['cors'].default is None

def test_kill_9_loses_no_acknowledged_add(model, tmp_path):
    """200 adds from 4 threads in 5 bursts of 40; SIGKILL at a different moment of each burst, restart; then every
    acknowledged id is there with its crop and is found by it, every acknowledged delete stays deleted, and what was
    never acknowledged is either absent or whole."""
    (tmp_path/'token').write_text(TOKEN + '\n')
    gal = tmp_path/'gallery'
    crops = [png(i) for i in range(200)]
    acked, deleted, tried = {}, [], set()          # id -> crop index
    lock = threading.Lock()
    t_start = time.time()
    for burst, kill_after in enumerate((3, 11, 19, 27, 35)):
        srv = Server(model, gal, tmp_path/'token', '--snapshot-every', '7', '--max-wait-ms', '2')
        if burst == 3:                              # acknowledged deletes survive a kill too
            for i in sorted(acked)[:3]:
                assert httpx.delete(f'{srv.url}/gallery/{i}', headers=AUTH, timeout=30).status_code == 200
                deleted.append(i); acked.pop(i)
        todo = list(range(burst * 40, burst * 40 + 40))
        done_here = []
        def client(part):
            with httpx.Client(timeout=30) as c:
                for ci in part:
                    with lock: tried.add(ci)
                    try: r = c.post(f'{srv.url}/gallery', files=[('image', (f'{ci}.png', crops[ci], 'image/png'))], data={'pid': ci}, headers=AUTH)
                    except httpx.HTTPError: return                      # the server is gone: this add was not acknowledged
                    assert r.status_code == 200, r.text
                    with lock: acked[r.json()['ids'][0]] = ci; done_here.append(ci)
        threads = [threading.Thread(target=client, args=(todo[i::4],)) for i in range(4)]
        for t in threads: t.start()
        t0 = time.time()
        while len(done_here) < kill_after and time.time() - t0 < 60: time.sleep(0.001)
        srv.kill()
        for t in threads: t.join(60)
        assert len(done_here) >= kill_after, f'burst {burst}: only {len(done_here)} adds in 60 s'
    srv = Server(model, gal, tmp_path/'token')
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            size = c.get('/health').json()['gallery']['size']
            # every acknowledged add: its crop is stored and finds it first, at score 1
            ids = sorted(acked)
            for s in range(0, len(ids), 32):
                part = ids[s:s + 32]
                res = c.post('/search', files=[('image', ('q.png', crops[acked[i]], 'image/png')) for i in part], data={'k': 1}).json()['results']
                assert [r[0]['id'] for r in res] == part and all(abs(r[0]['score'] - 1) < 1e-4 for r in res)
                assert [r[0]['pid'] for r in res] == [acked[i] for i in part]
            for i in ids[::17]: assert c.get(f'/gallery/{i}/image').content == crops[acked[i]]
            for i in deleted: assert c.get(f'/gallery/{i}/image').status_code == 404
            # what was never acknowledged is absent or whole (its crop stored, its vector found by it)
            extra = [i for i in range(max(acked) + 40) if i not in acked and i not in deleted and c.get(f'/gallery/{i}/image').status_code == 200]
            assert size == len(acked) + len(extra), (size, len(acked), extra)
            unacked = {crops[ci]: ci for ci in tried - set(acked.values())}
            for i in extra:
                ci = unacked[c.get(f'/gallery/{i}/image').content]
                r = c.post('/search', files=[('image', ('q.png', crops[ci], 'image/png'))], data={'k': 1}).json()['results'][0][0]
                assert r['id'] == i and r['pid'] == ci
    finally: srv.stop()
    assert len(acked) + len(deleted) >= 3 + 11 + 19 + 27 + 35, (len(acked), len(deleted))   # at least the adds awaited before each kill
    print(f'{len(acked)} acknowledged adds, {len(extra)} finished but unacknowledged, {len(deleted)} deletes, 6 starts: {time.time() - t_start:.0f} s')

def test_page_in_a_browser(model, tmp_path):
    "The operator's page: a query crop picked in the file input; the k result crops load, in the order the API returns."
    skip_without_browser()
    import uvicorn
    from selenium.webdriver.support.ui import WebDriverWait
    from reid_nb.serve import app
    crops = [png(i) for i in range(12)]
    api = app(model, tmp_path/'g', max_wait_ms=1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, host='127.0.0.1', port=port, log_level='warning'))
    th = threading.Thread(target=server.run, daemon=True); th.start()
    url = f'http://127.0.0.1:{port}'
    d = None
    try:
        t0 = time.time()
        while not server.started and time.time() - t0 < 30: time.sleep(0.05)
        r = httpx.post(f'{url}/gallery', files=[('image', (f'{i}.png', c, 'image/png')) for i, c in enumerate(crops)], data={'camid': [i % 3 for i in range(12)], 'label': 'door'})
        assert r.status_code == 200
        q = tmp_path/'query.png'; q.write_bytes(crops[4])
        expected = [h['id'] for h in httpx.post(f'{url}/search', files=[('image', ('q.png', crops[4], 'image/png'))], data={'k': 6}).json()['results'][0]]
        d = headless_chromium(tmp_path/'chromium')
        d.get(url + '/')
        WebDriverWait(d, 30).until(lambda d: 'crops in the gallery' in d.find_element('id', 'info').text)
        d.find_element('id', 'k').clear(); d.find_element('id', 'k').send_keys('6')
        d.find_element('id', 'qfile').send_keys(str(q))                     # picking a file searches at once
        WebDriverWait(d, 30).until(lambda d: d.execute_script(
            "const i = Array.from(document.querySelectorAll('figure.hit img')); return i.length === 6 && i.every(x => x.complete && x.naturalWidth > 0)"))
        shown = d.execute_script("return Array.from(document.querySelectorAll('figure.hit')).map(f => Number(f.dataset.id))")
        assert shown == expected and shown[0] == 4, (shown, expected)
        assert d.find_element('id', 'err').text == ''
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(SCREENSHOTS/'serve.png'))
        assert (SCREENSHOTS/'serve.png').stat().st_size > 0
    finally:
        if d is not None: d.quit()
        server.should_exit = True; th.join(10)
