"""The web page of `whisperless serve`, driven in headless Chromium against the real local stack."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from localstack import running_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium): run scripts/setup"
)

RESULT_TIMEOUT = 120


@pytest.fixture(scope="module")
def stack():
    with running_stack() as info:
        yield info


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_wav):
    """Twelve seconds of the two-speaker sample: enough speech, quick to transcribe."""
    from conftest import encode

    return encode(sample_wav, tmp_path_factory.mktemp("web") / "clip.wav", "pcm_s16le", seconds=12)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1500",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager must never try to download one (offline machine).
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def _by():
    from selenium.webdriver.common.by import By

    return By


def _wait(driver, condition, timeout: float = 10):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _open(driver, stack, key: str, clip: Path, *, diarization: bool = False, language: str = ""):
    By = _by()
    driver.get(stack["api"] + "/")
    field = driver.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "file").send_keys(str(clip))
    if diarization:
        driver.find_element(By.ID, "diarization").click()
    if language:
        driver.find_element(By.ID, "language").send_keys(language)


def _finished(driver):
    """Words on the page, or an error: whichever comes first (a failure should not wait the full timeout)."""
    By = _by()
    error = driver.find_element(By.ID, "error")
    if error.is_displayed():
        return "error"
    return "words" if driver.find_elements(By.CSS_SELECTOR, "#transcript .word") else False


def test_transcript_with_speakers_words_and_playback(stack, browser, clip, tmp_path):
    By = _by()
    _open(browser, stack, stack["apiKey"], clip, diarization=True)
    assert browser.find_element(By.ID, "player").get_attribute("src").startswith("blob:")
    browser.find_element(By.ID, "submit").click()
    outcome = _wait(browser, _finished, RESULT_TIMEOUT)
    assert outcome == "words", browser.find_element(By.ID, "error").text

    transcript = browser.find_element(By.ID, "transcript")
    assert "hello" in transcript.text.lower()
    assert browser.find_element(By.ID, "status").text.startswith("Done")
    segments = transcript.find_elements(By.CLASS_NAME, "segment")
    speakers = [s.text for s in transcript.find_elements(By.CSS_SELECTOR, ".segment .speaker")]
    assert segments and len(speakers) == len(segments)
    assert all(re.fullmatch(r"SPEAKER_\d\d", s) for s in speakers), speakers
    assert "SPEAKER_00" in speakers

    words = transcript.find_elements(By.CLASS_NAME, "word")
    assert all(w.get_attribute("data-start") for w in words)
    assert "probability" in words[0].get_attribute("title")
    # A word well into the clip, so "playback from its start" is not the same as "from 0".
    word = next(w for w in words if float(w.get_attribute("data-start")) > 2)
    start = float(word.get_attribute("data-start"))
    word.click()
    position = browser.execute_script("return document.getElementById('player').currentTime")
    assert abs(position - start) < 0.5, (position, start)

    # The raw JSON is the API's document, and downloadable.
    raw = browser.find_element(By.ID, "raw")
    raw.find_element(By.TAG_NAME, "summary").click()
    assert '"diarization"' in browser.find_element(By.ID, "raw-json").text
    link = browser.find_element(By.ID, "download")
    assert link.get_attribute("href").startswith("blob:") and link.get_attribute("download") == "clip.wav.json"

    # Subtitles are the API's rendering (GET /v1/transcriptions/{id}?format=srt), saved under the
    # name they get next to the audio. The save itself is recorded instead of written to disk.
    browser.execute_script("""
        window.saved = [];
        HTMLAnchorElement.prototype.click = function () {
            const a = this;
            fetch(a.href).then((r) => r.text()).then((text) => window.saved.push({name: a.download, text}));
        };
    """)
    browser.find_element(By.CSS_SELECTOR, "button.download[data-format='srt']").click()
    (saved,) = _wait(browser, lambda d: d.execute_script("return window.saved.length && window.saved"))
    assert saved["name"] == "clip.wav.srt"
    assert saved["text"].startswith("1\n00:00:0") and "[SPEAKER_0" in saved["text"]

    # For people: keep a picture to look at, wide and phone-narrow (no sideways scrolling there).
    browser.save_screenshot(str(tmp_path / "web-wide.png"))
    dark = [{"name": "prefers-color-scheme", "value": "dark"}]
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": dark})
    browser.save_screenshot(str(tmp_path / "web-dark.png"))
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    browser.set_window_size(390, 1400)
    try:
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        browser.save_screenshot(str(tmp_path / "web-narrow.png"))
    finally:
        browser.set_window_size(1100, 1500)
    assert overflow <= 0
    print(f"screenshots in {tmp_path}")


def test_the_key_is_remembered(stack, browser, clip):
    By = _by()
    _open(browser, stack, stack["apiKey"], clip)
    browser.refresh()
    assert browser.find_element(By.ID, "api-key").get_attribute("value") == stack["apiKey"]


def test_a_pending_job_is_polled_until_done(stack, browser, clip):
    """The API answers 202 when a job outlasts its wait; fake that answer (with the real job's id)
    so the page must follow statusUrl on the real API."""
    By = _by()
    _open(browser, stack, stack["apiKey"], clip)
    browser.execute_script("""
        window.polls = [];
        const real = window.fetch;
        window.fetch = async (url, init) => {
            window.polls.push(String(url));
            return real(url, init);
        };
        // The POST goes by XMLHttpRequest (for its upload progress): answer it 202 instead.
        const proto = XMLHttpRequest.prototype, open = proto.open;
        proto.open = function (method, url, ...rest) {
            this.faked = method === "POST" && String(url).endsWith("/v1/transcriptions");
            return open.call(this, method, url, ...rest);
        };
        const status = Object.getOwnPropertyDescriptor(proto, "status");
        const text = Object.getOwnPropertyDescriptor(proto, "responseText");
        Object.defineProperty(proto, "status", {get() {
            const real = status.get.call(this);
            return this.faked && real < 300 ? 202 : real;
        }});
        Object.defineProperty(proto, "responseText", {get() {
            const real = text.get.call(this);
            if (!this.faked || status.get.call(this) >= 300) return real;
            const id = JSON.parse(real).id;
            return JSON.stringify({id, status: "queued", statusUrl: "/v1/transcriptions/" + id});
        }});
    """)
    browser.find_element(By.ID, "submit").click()
    outcome = _wait(browser, _finished, RESULT_TIMEOUT)
    assert outcome == "words", browser.find_element(By.ID, "error").text
    # (The page also lists the key's enrolled voices when the key is entered: not a poll.)
    polls = [url for url in browser.execute_script("return window.polls") if not url.endswith("/v1/speakers")]
    assert polls and all("/v1/transcriptions/" in url for url in polls)
    assert "hello" in browser.find_element(By.ID, "transcript").text.lower()


def test_a_wrong_key_shows_the_api_error(stack, browser, clip):
    By = _by()
    _open(browser, stack, "wl_not-a-real-key", clip)
    browser.find_element(By.ID, "submit").click()
    error = _wait(browser, lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"))
    text = error.text.lower()
    assert "key" in text and "authorization" in text, text
    assert not browser.find_elements(By.CSS_SELECTOR, "#transcript .word")


def test_a_bad_option_names_its_field(stack, browser, clip):
    By = _by()
    _open(browser, stack, stack["apiKey"], clip, language="xx")
    browser.find_element(By.ID, "submit").click()
    error = _wait(browser, lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"))
    assert "field: language" in error.text
    assert browser.find_element(By.ID, "language").get_attribute("aria-invalid") == "true"


def test_the_redaction_option_removes_names_and_places(stack, browser, sample_wav):
    By = _by()
    _open(browser, stack, stack["apiKey"], sample_wav)
    browser.find_element(By.ID, "redact").click()
    browser.find_element(By.ID, "sentiment").click()
    browser.find_element(By.ID, "submit").click()
    outcome = _wait(browser, _finished, timeout=RESULT_TIMEOUT)
    assert outcome == "words", browser.find_element(By.ID, "error").text
    transcript = browser.find_element(By.ID, "transcript").text
    assert "[PERSON]" in transcript and "[LOCATION]" in transcript, transcript
    browser.find_element(By.ID, "raw").find_element(By.TAG_NAME, "summary").click()
    raw = browser.find_element(By.ID, "raw-json").text
    for name in ("Diane", "Sheila", "Jersey", "Texas", "Chicago"):
        assert name not in transcript and name not in raw
    summary = browser.find_element(By.ID, "summary").text
    assert "redactions" in summary and "sentiment" in summary, summary


def _record_statuses(driver) -> None:
    """Every text the status line shows, in order (window.statuses)."""
    driver.execute_script("""
        window.statuses = [];
        const line = document.getElementById('status');
        new MutationObserver(() => {
            const text = line.textContent;
            if (text && window.statuses[window.statuses.length - 1] !== text) window.statuses.push(text);
        }).observe(line, {childList: true, characterData: true, subtree: true});
    """)


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory, sample_wav):
    """Over the API's 10 MB payload limit: 12 s of the sample, then silence (cheap to transcribe)."""
    import numpy as np
    from reliability_common import wav_bytes

    from whisperless.engine.audio import decode_audio

    speech = decode_audio(sample_wav)[int(6.4 * 16000) : int(18.4 * 16000)]
    audio = np.concatenate([speech, np.zeros(380 * 16000, dtype=np.float32)])
    path = tmp_path_factory.mktemp("web-big") / "long meeting.wav"
    path.write_bytes(wav_bytes(data=(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()))
    assert path.stat().st_size > 10 * 1024 * 1024
    return path


def test_a_file_over_10_mb_goes_through_the_presigned_upload_with_progress(stack, browser, big_clip):
    By = _by()
    _open(browser, stack, stack["apiKey"], big_clip)
    _record_statuses(browser)
    browser.find_element(By.ID, "submit").click()
    outcome = _wait(browser, _finished, RESULT_TIMEOUT)
    assert outcome == "words", browser.find_element(By.ID, "error").text
    assert "hello" in browser.find_element(By.ID, "transcript").text.lower()

    statuses = browser.execute_script("return window.statuses")
    progress = [s for s in statuses if re.fullmatch(r"Uploading long meeting\.wav… \d+ % \(.+ of 12\.\d MB\)", s)]
    assert progress, statuses
    uploading = statuses.index(progress[0])
    transcribing = next(i for i, s in enumerate(statuses) if s.startswith(("Transcribing", "Queued")))
    assert uploading < transcribing and statuses[-1].startswith("Done"), statuses
    # The file went to the bucket through the presigned URL, not through the API.
    requests_made = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => [e.initiatorType, e.name])"
    )
    assert any(name.endswith("/v1/uploads") for _, name in requests_made)
    assert any(name.startswith(stack["s3"]) and "X-Amz-Signature" in name for _, name in requests_made)
    assert not any(name.endswith("/v1/transcriptions") for _, name in requests_made)


def test_a_small_file_says_uploading_then_transcribing(stack, browser, clip):
    By = _by()
    _open(browser, stack, stack["apiKey"], clip)
    _record_statuses(browser)
    browser.find_element(By.ID, "submit").click()
    assert _wait(browser, _finished, RESULT_TIMEOUT) == "words"
    statuses = browser.execute_script("return window.statuses")
    first_upload = next(i for i, s in enumerate(statuses) if s.startswith("Uploading"))
    first_work = next(i for i, s in enumerate(statuses) if s.startswith("Transcribing"))
    assert first_upload < first_work and statuses[-1].startswith("Done"), statuses


def test_choosing_a_new_file_clears_the_old_transcript(stack, browser, clip, big_clip):
    By = _by()
    _open(browser, stack, stack["apiKey"], clip)
    browser.find_element(By.ID, "submit").click()
    assert _wait(browser, _finished, RESULT_TIMEOUT) == "words"
    assert browser.find_element(By.ID, "result").is_displayed()

    browser.find_element(By.ID, "file").send_keys(str(big_clip))
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#transcript .word") == []
    assert browser.find_element(By.ID, "raw-json").get_attribute("textContent") == ""
    assert browser.find_element(By.ID, "status").text == ""
    assert browser.find_element(By.ID, "player").get_attribute("src").startswith("blob:")  # the new file plays


def test_a_voice_enrolled_on_the_page_names_her_in_another_meeting(stack, browser):
    By = _by()
    data = Path(__file__).resolve().parents[1] / "data" / "speakers"
    _open(browser, stack, stack["apiKey"], data / "trn09.wav", diarization=True)
    browser.find_element(By.ID, "voice-name").send_keys("Fiona")
    browser.find_element(By.ID, "voice-file").send_keys(str(data / "trn06-fee083.wav"))
    browser.find_element(By.ID, "enrol").click()
    _wait(browser, lambda d: d.find_element(By.ID, "enrol-status").text.startswith("Enrolled"), RESULT_TIMEOUT)
    assert "Fiona" in browser.find_element(By.ID, "voice-list").text  # listed by the time it says so

    browser.find_element(By.ID, "known-speakers").send_keys("Fiona")
    browser.find_element(By.ID, "submit").click()
    outcome = _wait(browser, _finished, RESULT_TIMEOUT)
    assert outcome == "words", browser.find_element(By.ID, "error").text
    speakers = {s.text for s in browser.find_elements(By.CSS_SELECTOR, "#transcript .segment .speaker")}
    assert "Fiona" in speakers and any(re.fullmatch(r"SPEAKER_\d\d", s) for s in speakers), speakers
    assert "recognised: Fiona" in browser.find_element(By.ID, "summary").text

    browser.find_element(By.CSS_SELECTOR, "#voice-list button.forget").click()
    _wait(browser, lambda d: "Fiona" not in d.find_element(By.ID, "voice-list").text)
