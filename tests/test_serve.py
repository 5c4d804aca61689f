"""`cocktail serve`: the web page's API in process, under load, and in a real browser.

A tiny oracle model (tests/toys.py's BandSplit) saved to a checkpoint separates a
low tone from a high tone, so every check of "it separates" is exact and fast. Extraction
runs as `cocktail extract` does, separating first and keeping the closest voice; with the
toys of tests/helpers.py's voice_models (a band split between two pitched voices, and an
embedder that reads the pitch), which output is the enrolled talker is known. The browser
test drives Debian's chromium through its packaged chromedriver; it fails (never skips) when
they are missing, saying to run `make install`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile
from starlette.testclient import TestClient

from cocktailparty.cli import main
from cocktailparty.core import checkpoint
from cocktailparty.core.audio import resample
from cocktailparty.eval.metrics.permutations import si_snri
from cocktailparty.inference import voice_select
from cocktailparty.inference.separate import Separator
from cocktailparty.inference.voice_select import VoiceSelector, load_embedder
from cocktailparty.serve import work
from cocktailparty.serve.app import Limits, create_app
from cocktailparty.serve.jobs import Job
from cocktailparty.serve.server import address, make_server, open_socket
from tests.helpers import HIGH_PITCH, LOW_PITCH, pitch_share, voice, voice_models
from tests.toys import BandSplit, BandSplitConfig, TinyConfig, TinyModel

ROOT = Path(__file__).resolve().parent.parent
BASE = "http://127.0.0.1:8000"  # the server answers to loopback names only
FLOOR_DB = 10.0  # the oracle separates tones by far more; a swap or a silent track falls far below


def two_talkers(rate=16000, seconds=2.0, seed=0):
    """(mixture, references): a low tone + a high tone (with a little noise), as test_evaluate's sets."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    s1 = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t)
    s2 = 0.3 * np.sin(2 * np.pi * rng.uniform(1800, 3000) * t) + 0.01 * rng.standard_normal(t.size)
    return (s1 + s2).astype(np.float32), np.stack([s1, s2])


def wav_bytes(samples, rate) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def check_separates(wavs: list[bytes], rate: int, mixture, references) -> float:
    """Each output is a WAV at the input's rate and length; together they separate."""
    estimates = []
    for data in wavs:
        header = soundfile.info(io.BytesIO(data))
        assert header.format == "WAV" and header.samplerate == rate and header.frames == mixture.shape[0]
        estimates.append(soundfile.read(io.BytesIO(data), dtype="float64")[0])
    improvement, _ = si_snri(np.stack(estimates), references, mixture.astype(np.float64))
    assert improvement.min() > FLOOR_DB, improvement
    return float(improvement.mean())


@pytest.fixture(scope="module")
def band_model(tmp_path_factory) -> str:
    return str(checkpoint.save(BandSplit(BandSplitConfig()), tmp_path_factory.mktemp("model") / "band.safetensors"))


@pytest.fixture(scope="module")
def pickers(tmp_path_factory) -> dict[str, str]:
    """The toy separator and embedder that extraction runs here (tests/helpers.py)."""
    return voice_models(tmp_path_factory.mktemp("voices"))


@pytest.fixture()
def client(band_model):
    app = create_app(band_model, limits=Limits(max_seconds=3.0, max_pending=4, keep_seconds=60))
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def wait(get, job_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = get(f"/api/jobs/{job_id}")
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {status['state']} after {timeout} s")


def upload(client, mixture: bytes, name="meeting.wav", model=None):
    data = {"model": model} if model else {}
    return client.post("/api/separate", files={"mixture": (name, mixture, "audio/wav")}, data=data)


def extract(client, mixture: bytes, enrollment: bytes) -> dict:
    """Upload a recording and an enrollment to the extract tab's API; the finished job."""
    answer = client.post("/api/extract", files={"mixture": ("meeting.wav", mixture),
                                                "enrollment": ("alice.wav", enrollment)})
    assert answer.status_code == 202, answer.text
    return wait(lambda url: client.get(url).json(), answer.json()["id"], timeout=60)


# --- in process ------------------------------------------------------------------------------


def test_separate_gives_each_talker_a_wav_at_the_input_rate_and_pictures(client, band_model):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for asset in ("/", "/static/app.js", "/static/style.css"):  # nothing is fetched from elsewhere
        text = client.get(asset).text
        assert "http:" not in text and "https:" not in text and 'src="//' not in text, asset
    info = client.get("/api/info").json()
    assert info["default"] == band_model and "tdanet-real16k" in info["models"]

    mixture, references = two_talkers(rate=16000)  # the model runs at 8 kHz: resampled both ways
    answer = upload(client, wav_bytes(mixture, 16000))
    assert answer.status_code == 202, answer.text
    job = wait(lambda url: client.get(url).json(), answer.json()["id"])
    assert job["state"] == "done", job
    result = job["result"]
    assert len(result["outputs"]) == 2 and result["rate"] == 16000
    base = f"/api/jobs/{job['id']}/files/"
    wavs = []
    for output in result["outputs"]:
        download = client.get(base + output["audio"] + "?download=1")
        assert download.status_code == 200 and download.headers["content-type"] == "audio/wav"
        assert download.headers["content-disposition"].startswith('attachment; filename="meeting_s')
        wavs.append(download.content)
        picture = client.get(base + output["spectrogram"])
        assert picture.headers["content-type"] == "image/png" and picture.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(base + result["mixture"]["spectrogram"]).content[:4] == b"\x89PNG"
    check_separates(wavs, 16000, mixture, references)


def test_bad_uploads_get_the_command_lines_one_line_message(client, tmp_path, caplog, monkeypatch, band_model):
    answer = client.post("/api/separate", files={"mixture": ("notes.txt", b"minutes of the meeting\n" * 50)})
    assert answer.status_code == 400
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_bytes(b"minutes of the meeting\n" * 50)
    assert main(["-q", "separate", "notes.txt", "--model", band_model]) == 1
    assert answer.json()["error"] in caplog.messages  # what `cocktail separate` prints after "cocktail: error: "

    long = upload(client, wav_bytes(two_talkers(8000, seconds=4.0)[0], 8000), name="long.wav")
    assert long.status_code == 400
    assert long.json()["error"] == ("long.wav: is 4.0 s long; this server takes recordings of at most 3 s "
                                    "(cocktail serve --max-minutes)")

    short = upload(client, wav_bytes(np.full(40, 0.1, np.float32), 8000), name="blip.wav")
    job = wait(lambda url: client.get(url).json(), short.json()["id"])
    assert job["state"] == "error" and job["error"].startswith("blip.wav: is 0.005 s long; at least 0.01 s is needed")

    other = upload(client, wav_bytes(two_talkers(8000)[0], 8000), model="/etc/passwd")
    assert other.status_code == 400 and "is not offered here" in other.json()["error"]
    missing = client.post("/api/separate", data={"model": band_model})
    assert missing.status_code == 400 and missing.json()["error"] == "no recording file was sent"


def test_uploads_over_the_size_limit_are_refused(band_model):
    app = create_app(band_model, limits=Limits(max_bytes=100_000))
    with TestClient(app, base_url=BASE) as test_client:
        answer = upload(test_client, wav_bytes(two_talkers(16000, seconds=2.0)[0], 16000))  # 128 kB
        assert answer.status_code == 413
        assert answer.json()["error"] == ("the upload is 0.128 MB; this server takes at most 0.1 MB a request "
                                          "(cocktail serve --max-mb)")
        # A body without Content-Length is counted as it comes.
        chunks = (b"x" * 10_000 for _ in range(20))
        streamed = test_client.post("/api/separate", content=chunks,
                                    headers={"content-type": "multipart/form-data; boundary=b"})
        assert streamed.status_code == 413 and streamed.json()["error"].startswith("the upload is over 0.1 MB;")


def test_other_hosts_and_other_sites_pages_are_refused(client):
    data = wav_bytes(two_talkers(8000)[0], 8000)
    assert client.get("/api/info", headers={"host": "attacker.example:8000"}).status_code == 421
    assert client.get("/api/info", headers={"host": "[::1]:8000"}).status_code == 200
    elsewhere = client.post("/api/separate", files={"mixture": ("m.wav", data)},
                            headers={"origin": "http://attacker.example"})
    assert elsewhere.status_code == 403 and "another site's page" in elsewhere.json()["error"]
    same = client.post("/api/separate", files={"mixture": ("m.wav", data)}, headers={"origin": BASE})
    assert same.status_code == 202


def test_files_are_found_by_job_id_and_fixed_name_only(client):
    answer = upload(client, wav_bytes(two_talkers(8000)[0], 8000))
    job_id = answer.json()["id"]
    assert wait(lambda url: client.get(url).json(), job_id)["state"] == "done"
    assert client.get(f"/api/jobs/{job_id}/files/s1.wav").status_code == 200
    for url in (f"/api/jobs/{'A' * 22}", f"/api/jobs/{uuid.uuid4().hex}", "/api/jobs/..%2F..%2Fetc",
                f"/api/jobs/{'A' * 22}/files/s1.wav", "/api/jobs/..%2F..%2F..%2Fetc/files/passwd",
                f"/api/jobs/{job_id}/files/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
                f"/api/jobs/{job_id}/files/%2Fetc%2Fpasswd",
                f"/api/jobs/{job_id}/files/mixture.wav",  # the upload itself is not served back
                f"/api/jobs/{job_id}/files/s3.wav", "/static/..%2Fapp.py", "/static/%2E%2E/jobs.py"):
        assert client.get(url).status_code == 404, url


def test_private_folder_modes_and_clean_up(band_model):
    app = create_app(band_model, limits=Limits(keep_seconds=60))
    store = app.state.store
    with TestClient(app, base_url=BASE) as test_client:
        assert store.folder.stat().st_mode & 0o777 == 0o700
        job_id = upload(test_client, wav_bytes(two_talkers(8000)[0], 8000)).json()["id"]
        assert wait(lambda url: test_client.get(url).json(), job_id)["state"] == "done"
        folder = store.folder / job_id
        assert folder.stat().st_mode & 0o777 == 0o700 and (folder / "s1.wav").is_file()
        assert store.sweep() == 0 and folder.exists()  # not old yet
        assert store.sweep(now=time.monotonic() + 61) == 1
        assert not folder.exists() and test_client.get(f"/api/jobs/{job_id}").status_code == 404
        kept = upload(test_client, wav_bytes(two_talkers(8000)[0], 8000)).json()["id"]
        assert wait(lambda url: test_client.get(url).json(), kept)["state"] == "done"
    assert not store.folder.exists()  # shutdown removes everything


# --- extraction: separate, then keep the closest voice ------------------------------------------


def test_extract_keeps_the_separated_output_closest_to_the_enrollment(band_model, pickers, monkeypatch):
    loads, stages = [], []
    load = work.load_talker_picker
    monkeypatch.setattr(work, "load_talker_picker", lambda *args: loads.append(args) or load(*args))
    report = Job.report
    monkeypatch.setattr(Job, "report", lambda job, stage, fraction: (stages.append((stage, fraction)),
                                                                    report(job, stage, fraction))[1])
    app = create_app(band_model, extract_model=pickers["separator"], embedder=pickers["embedder"])
    rate = 16000  # the toys run at 8 kHz: resampled both ways, the kept voice comes back at 16 kHz
    mixture = voice(LOW_PITCH, 1.2, 1, rate) + 0.7 * voice(HIGH_PITCH, 1.2, 2, rate)
    with TestClient(app, base_url=BASE) as client:
        extraction = client.get("/api/info").json()["extract"]
        assert extraction == {"model": pickers["separator"], "embedder": pickers["embedder"]}
        for kept, dropped in ((HIGH_PITCH, LOW_PITCH), (LOW_PITCH, HIGH_PITCH)):
            stages.clear()
            enrollment = voice(kept, 1.5, 0, rate)
            job = extract(client, wav_bytes(mixture, rate), wav_bytes(enrollment, rate))
            assert job["state"] == "done", job
            result = job["result"]
            assert (result["model"], result["embedder"]) == (pickers["separator"], pickers["embedder"])
            (output,) = result["outputs"]
            download = client.get(f"/api/jobs/{job['id']}/files/{output['audio']}?download=1")
            assert download.headers["content-disposition"] == 'attachment; filename="meeting_alice.wav"'
            samples, samples_rate = soundfile.read(io.BytesIO(download.content))
            assert samples_rate == rate and samples.shape == mixture.shape
            assert pitch_share(samples, kept, rate) > 10 * pitch_share(samples, dropped, rate)
            # The score is `cocktail verify`'s: the largest cosine between the enrollment and an
            # output. No threshold was calibrated for the toys: no decision.
            selector = VoiceSelector(load_embedder(pickers["embedder"]), resample(enrollment, rate, 8000), 8000)
            expected = selector.score(Separator.from_pretrained(pickers["separator"], "cpu")(mixture, rate), rate)
            assert result["verification"]["score"] == pytest.approx(expected, abs=1e-4)
            assert result["verification"] | {"score": None} == {"score": None, "threshold": None,
                                                                 "threshold_source": None, "decision": None}
            # Progress: the separator's chunks, then one step per output embedded, never backwards.
            names = [stage for stage, _ in stages]
            assert names[names.index("embedding the enrollment"):] == [
                "embedding the enrollment", "separating: part 1 of 1", "comparing voices: output 1 of 2",
                "comparing voices: output 2 of 2", "drawing spectrograms", "done"]
            fractions = [fraction for _, fraction in stages]
            assert fractions == sorted(fractions), stages

        short = extract(client, wav_bytes(mixture, rate), wav_bytes(voice(HIGH_PITCH, 0.2, 0, rate), rate))
        assert short["state"] == "error" and short["error"].startswith("alice.wav: the enrollment is 0.20 s long")
    assert len(loads) == 1  # the separator and the embedder load once, for every job


def test_extract_decides_with_the_threshold_calibrated_for_its_separator_and_embedder(band_model, pickers,
                                                                                       monkeypatch):
    monkeypatch.setitem(voice_select.CALIBRATED_THRESHOLDS, (pickers["separator"], pickers["embedder"]), 0.7)
    app = create_app(band_model, extract_model=pickers["separator"], embedder=pickers["embedder"])
    mixture = wav_bytes(voice(LOW_PITCH, 1.2, 1) + 0.7 * voice(HIGH_PITCH, 1.2, 2), 8000)
    source = f"calibrated for {pickers['separator']} with {pickers['embedder']}"
    with TestClient(app, base_url=BASE) as client:
        for enrolled, decision in ((HIGH_PITCH, "present"), (150.0, "absent")):  # 150 Hz: neither talker
            verification = extract(client, mixture, wav_bytes(voice(enrolled, 1.5, 0), 8000))["result"]["verification"]
            assert verification["threshold"] == 0.7 and verification["decision"] == decision, verification
            assert verification["threshold_source"] == source


def test_extract_with_a_model_that_cannot_separate_first_fails_in_words(band_model, pickers, tmp_path):
    single = checkpoint.save(TinyModel(TinyConfig(num_sources=1)), tmp_path / "one.safetensors")
    app = create_app(band_model, extract_model=str(single), embedder=pickers["embedder"])
    with TestClient(app, base_url=BASE) as client:
        job = extract(client, wav_bytes(voice(LOW_PITCH, 1.2, 1), 8000), wav_bytes(voice(LOW_PITCH, 1.5, 0), 8000))
    assert job["state"] == "error" and "does not separate two or more talkers" in job["error"]


@pytest.mark.slow
def test_extract_with_the_bundled_separator_and_embedder_decides_at_their_calibrated_threshold(client):
    """What the page runs by default: the bundled default separator and the bundled Tune-In
    model's speaker vectors, as `cocktail extract` and `cocktail verify` do."""
    pair = (checkpoint.DEFAULT_MODEL, voice_select.DEFAULT_EMBEDDER)
    assert client.get("/api/info").json()["extract"] == {"model": pair[0], "embedder": pair[1]}
    mixture, references = two_talkers(8000, seconds=2.0)
    enrollment = two_talkers(8000, seconds=1.5, seed=1)[1][1].astype(np.float32)
    job = extract(client, wav_bytes(mixture, 8000), wav_bytes(enrollment, 8000))
    assert job["state"] == "done", job
    assert (job["result"]["model"], job["result"]["embedder"]) == pair
    (output,) = job["result"]["outputs"]
    header = soundfile.info(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/{output['audio']}").content))
    assert header.samplerate == 8000 and header.frames == mixture.shape[0]
    verification = job["result"]["verification"]
    threshold = voice_select.CALIBRATED_THRESHOLDS[pair]
    assert verification["threshold"] == threshold
    assert verification["threshold_source"] == f"calibrated for {pair[0]} with {pair[1]}"
    assert -1 <= verification["score"] <= 1
    assert verification["decision"] == ("present" if verification["score"] >= threshold else "absent")


# --- a real server ------------------------------------------------------------------------------


@contextlib.contextmanager
def running(app):
    """Serve ``app`` with uvicorn in a thread on a free port; yields its address."""
    sock = open_socket("127.0.0.1", 0)
    server = make_server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield address(sock).rstrip("/")
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def post_form(url: str, files: dict[str, tuple[str, bytes]]) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
                    for name, (filename, data) in files.items()) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.mark.slow
def test_twenty_uploads_at_once_finish_or_are_refused_in_words(band_model):
    mixture, references = two_talkers(16000, seconds=4.0)
    data = wav_bytes(mixture, 16000)
    app = create_app(band_model, limits=Limits(max_pending=8))
    before, peak, sampling = rss_mb(), [rss_mb()], threading.Event()

    def sample():
        while not sampling.wait(0.05):
            peak.append(rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    with running(app) as base:
        answers: list = [None] * 20

        def send(i):
            answers[i] = post_form(f"{base}/api/separate", {"mixture": (f"m{i}.wav", data)})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        accepted = [body["id"] for code, body in answers if code == 202]
        refused = [body["error"] for code, body in answers if code == 503]
        assert len(accepted) + len(refused) == 20, answers
        assert 1 <= len(accepted) <= 8 and all(message.startswith("the server is busy: ") for message in refused)
        finished = [wait(lambda url: get_json(base + url), job_id) for job_id in accepted]
        assert all(job["state"] == "done" for job in finished)
        last = finished[-1]
        wavs = [urllib.request.urlopen(f"{base}/api/jobs/{last['id']}/files/{o['audio']}").read()
                for o in last["result"]["outputs"]]
        check_separates(wavs, 16000, mixture, references)
        assert post_form(f"{base}/api/separate", {"mixture": ("again.wav", data)})[0] == 202  # queue drained
    sampling.set()
    sampler.join()
    growth = max(peak) - before
    print(f"\nload: 20 uploads of {len(data) / 1e6:.2f} MB: {len(accepted)} accepted, {len(refused)} refused, "
          f"{time.monotonic() - started:.1f} s; RSS {before:.0f} MB before, peak {max(peak):.0f} MB "
          f"(+{growth:.0f} MB)")
    assert growth < 300, f"memory grew by {growth:.0f} MB"


@pytest.mark.slow
def test_the_command_serves_until_ctrl_c_and_leaves_no_files(band_model, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # The command as `cocktail` runs it, with the test model's architecture registered first.
    command = [sys.executable, "-c", "import sys, tests.toys; from cocktailparty.cli import main; "
               "sys.exit(main(sys.argv[1:]))"]
    process = subprocess.Popen([*command, "serve", "--port", "0", "--model", band_model, "--device", "cpu"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("cocktail serve: open http://127.0.0.1:"), (line, process.stderr.read())
        url = line.split()[3]
        assert get_json(url + "api/info")["default"] == band_model
        assert [p.name.startswith("cocktail-serve-") for p in tmp_path.iterdir()] == [True]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert list(tmp_path.iterdir()) == []

    with open_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run([*command, "serve", "--port", str(port)], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (f"cocktail: error: --port {port}: 127.0.0.1:{port} is already in use; "
                             f"pick another port with --port\n")


# --- a real browser -------------------------------------------------------------------------------


def chromium():
    """A headless Debian chromium driven by its packaged chromedriver; fails in words without them."""
    binary = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.fail("chromium and chromium-driver are not installed: run `make install` (as root; "
                    "scripts/install-system-deps.sh installs them)", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: run `make install` (it installs the test extras)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1000,1500", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))


@pytest.mark.slow
def test_a_browser_separates_an_upload_and_shows_two_players(band_model, pickers, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    mixture, references = two_talkers(16000, seconds=2.0)
    path = tmp_path / "meeting.wav"
    soundfile.write(path, mixture, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "voices.wav", voice(LOW_PITCH, 1.2, 1) + 0.7 * voice(HIGH_PITCH, 1.2, 2), 8000)
    soundfile.write(tmp_path / "alice.wav", voice(HIGH_PITCH, 1.5, 0), 8000)
    monkeypatch.setitem(voice_select.CALIBRATED_THRESHOLDS, (pickers["separator"], pickers["embedder"]), 0.7)
    app = create_app(band_model, extract_model=pickers["separator"], embedder=pickers["embedder"])
    with running(app) as base:
        driver = chromium()
        try:
            driver.get(base + "/")
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#separate-model option"))
            driver.find_element(By.ID, "separate-file").send_keys(str(path))
            driver.find_element(By.ID, "separate-go").click()
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "results").is_displayed()
                                            or d.find_element(By.ID, "error").is_displayed())
            assert not driver.find_element(By.ID, "error").is_displayed(), driver.find_element(By.ID, "error").text
            players = driver.find_elements(By.CSS_SELECTOR, "#outputs audio")
            assert len(players) == 2
            # The browser decodes each track: its duration is the recording's.
            WebDriverWait(driver, 20).until(lambda d: all(d.execute_script(
                "return isFinite(arguments[0].duration) && arguments[0].duration > 0", p) for p in players))
            assert [round(driver.execute_script("return arguments[0].duration", p), 2) for p in players] == [2.0, 2.0]
            WebDriverWait(driver, 20).until(lambda d: all(d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                for img in d.find_elements(By.CSS_SELECTOR, "#results img")))
            assert not driver.find_element(By.ID, "status").is_displayed()  # the progress bar goes away
            links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#outputs a.download")]
            assert len(links) == 2
            screenshot = driver.get_screenshot_as_png()

            # A file that is not sound: the page shows the command line's one-line message.
            (tmp_path / "notes.txt").write_text("minutes of the meeting\n" * 50)
            driver.find_element(By.ID, "separate-file").send_keys(str(tmp_path / "notes.txt"))
            driver.find_element(By.ID, "separate-go").click()
            WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "error").is_displayed())
            assert driver.find_element(By.ID, "error").text == ("error: notes.txt: not a sound file that can be "
                                                               "read (Format not recognised)")
            assert not driver.find_element(By.ID, "results").is_displayed()

            # The extract tab names what it runs, and shows the kept voice with the verdict.
            driver.find_element(By.ID, "tab-extract").click()
            assert driver.find_element(By.ID, "extract-model").text == (
                f"Separates with {pickers['separator']}, then keeps the output whose voice is closest to the "
                f"enrollment's (embedder: {pickers['embedder']})")
            driver.find_element(By.ID, "extract-file").send_keys(str(tmp_path / "voices.wav"))
            driver.find_element(By.ID, "enroll-file").send_keys(str(tmp_path / "alice.wav"))
            driver.find_element(By.ID, "extract-go").click()
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "results").is_displayed()
                                            or d.find_element(By.ID, "error").is_displayed())
            assert not driver.find_element(By.ID, "error").is_displayed(), driver.find_element(By.ID, "error").text
            assert len(driver.find_elements(By.CSS_SELECTOR, "#outputs audio")) == 1
            verdict = driver.find_element(By.ID, "verdict")
            assert verdict.get_attribute("data-decision") == "present"
            assert verdict.text.startswith("Verification score ") and verdict.text.endswith(
                " (threshold 0.700): the enrolled talker speaks in this recording.")
        finally:
            driver.quit()
        wavs = [urllib.request.urlopen(link).read() for link in links]
    check_separates(wavs, 16000, mixture, references)
    (tmp_path / "page.png").write_bytes(screenshot)
    from PIL import Image

    colours = Image.open(io.BytesIO(screenshot)).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is (nearly) blank"
