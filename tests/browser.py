"""Shared browser scaffolding for the tests that drive a real page (tests/test_docs.py, tests/test_serve.py): where
Chromium and its driver are, why a browser test cannot run, a headless Chromium started the same way everywhere, and
the folder where the screenshots go (beside the docs build, `_build/docs/screenshots/`, not in git)."""
import os, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
DRIVER = shutil.which('chromedriver')
REQUIRE = os.environ.get('REID_NB_REQUIRE_BROWSER') == '1'     # .ci/run sets it: a missing browser fails instead of skipping
SCREENSHOTS = Path(os.environ.get('REID_NB_DOCS', ROOT/'_build'/'docs'))/'screenshots'

def browser_missing()->str|None:
    "Why a browser test cannot run here (None when it can)."
    try: import selenium  # noqa: F401
    except ImportError: return 'the selenium package is not installed'
    if not (CHROMIUM and DRIVER): return 'chromium / chromedriver not found (Debian: apt-get install chromium chromium-driver)'

def skip_without_browser():
    "Skip the test without a browser (fail when REID_NB_REQUIRE_BROWSER=1)."
    why = browser_missing()
    if why:
        if REQUIRE: pytest.fail(why)
        pytest.skip(why)

def headless_chromium(user_data_dir, # a fresh folder for the browser's profile
                      size=(1280, 1600), # window (width, height)
                     ):
    "A headless Chromium driven by selenium, with nothing that reaches the network by itself."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
              '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', f'--window-size={size[0]},{size[1]}',
              f'--user-data-dir={user_data_dir}'):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    d.set_page_load_timeout(60)
    return d
