"""The web demo on a real server: gradio_client, then a real headless browser."""

import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import EXAMPLES, SHIPPED

pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")
EXAMPLE_WAVS = sorted(EXAMPLES.glob("*.wav"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    from speechlstm import Recognizer
    from speechlstm.webui import launch

    port = _free_port()
    demo = launch(Recognizer.from_checkpoint(device="cpu"), port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def _label(result) -> str:
    return result[0]["label"]


def test_real_clip_gives_its_word(client):
    from gradio_client import handle_file

    for path in EXAMPLE_WAVS[:3]:
        top, _, info = client.predict(handle_file(str(path)), api_name="/classify")
        assert top["label"] == path.name.split("_")[0]
        assert len(top["confidences"]) == 5
        assert "inference" in info and "ms" in info


def test_garbage_gives_an_error_and_the_server_keeps_serving(client, tmp_path):
    from gradio_client import handle_file

    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for bad in (junk, empty):
        with pytest.raises(Exception, match="Could not use this audio"):
            client.predict(handle_file(str(bad)), api_name="/classify")
    good = EXAMPLE_WAVS[0]
    assert _label(client.predict(handle_file(str(good)), api_name="/classify")) == good.name.split("_")[0]


def test_too_long_upload_is_refused_with_a_message(client, tmp_path):
    import numpy as np
    import soundfile as sf
    from gradio_client import handle_file

    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(8000 * 200, np.int16), 8000)  # 200 s, small file
    with pytest.raises(Exception, match="limit is"):
        client.predict(handle_file(str(long)), api_name="/classify")


def test_twenty_concurrent_requests_all_answered_correctly(server):
    from gradio_client import Client, handle_file

    jobs = [EXAMPLE_WAVS[i % len(EXAMPLE_WAVS)] for i in range(20)]

    def one(path):
        return _label(Client(server, verbose=False).predict(handle_file(str(path)), api_name="/classify"))

    with ThreadPoolExecutor(max_workers=20) as pool:
        labels = list(pool.map(one, jobs))
    assert labels == [p.name.split("_")[0] for p in jobs]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="Debian chromium + chromium-driver are not installed")
def test_real_browser_uploads_a_clip_and_reads_the_label(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1100", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 60)
        upload = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#clip-audio input[type=file]")))
        clip = next(p for p in EXAMPLE_WAVS if p.name.startswith("stop_"))
        upload.send_keys(str(clip))
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#clip-audio audio, #clip-audio wave, "
                                                                    "#clip-audio .waveform-container")))
        driver.find_element(By.CSS_SELECTOR, "#recognize").click()
        wait.until(lambda d: "stop" in d.find_element(By.CSS_SELECTOR, "#prediction").text)
        lines = [x.strip() for x in driver.find_element(By.CSS_SELECTOR, "#prediction").text.splitlines()]
        assert lines[:2] == ["Prediction", "stop"]  # component title, then the top label
        shot = Path(os.environ.get("SPEECHLSTM_ARTIFACTS", tmp_path)) / "browser.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
