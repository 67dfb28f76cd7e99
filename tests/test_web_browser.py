"""The reader's whole journey in a real browser (Debian's chromium, driven by selenium
through chromium-driver) against a real `digest serve` (uvicorn on loopback) and the real
SMTP server: subscribe, the confirmation mail, confirm with the page's button, the first
digest from `digest run`, then from that mail: view in browser, vote, change interests
(the next digest reflects them), unsubscribe through the page's button; and the one-click
POST a mail provider sends. Every page is checked with axe-core (vendored) in light and
dark mode, and saved as screenshots at 375 and 1024 px under artifacts/web/."""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.sources import parse
from digest.subscribers import load_profile
from tests.conftest import FEEDS, ROOT
from tests.smtpserver import SmtpServer, free_port
from tests.webhelp import SECRET, Site, make_site

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DIGEST = [sys.executable, "-m", "digest"]
ARTIFACTS = ROOT / "artifacts" / "web"
AXE = (ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")

pytestmark = pytest.mark.skipif(
    not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()),
    reason="needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver",
)


def wait_until(check: Any, what: str, seconds: float = 30) -> Any:
    """Poll ``check`` (a server process coming up) until it gives something true."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Site, str, dict[str, str]]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": SECRET}
    with SmtpServer() as srv:
        site = make_site(tmp_path, srv, base=base, edition=False)
        proc = subprocess.Popen(
            [*DIGEST, "serve", "--config", str(site.config), "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:

            def up() -> bool:
                if proc.poll() is not None:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise AssertionError(f"digest serve exited: {out}")
                try:
                    return httpx.get(base + "/healthz", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(up, "digest serve")
            yield site, base, env
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--disable-quic",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1024,900",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def look(driver: Any, name: str) -> None:
    """Screenshots at 375 and 1024 px (and 375 px in dark mode), and axe-core's check of
    the page in light and dark mode: no violation of WCAG 2 A/AA or of the best practices
    that matter for a form (labels, contrast, landmarks, focus order)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for dark in (False, True):
        scheme = "dark" if dark else "light"
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        for width in (375, 1024) if not dark else (375,):
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 500},
            )
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": width,
                    "height": min(int(height), 6000),
                    "deviceScaleFactor": 1,
                    "mobile": width < 500,
                },
            )
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth > window.innerWidth"
            )
            assert not overflow, f"{name}: wider than {width} px"
            driver.save_screenshot(str(ARTIFACTS / f"{name}-{width}{'-dark' if dark else ''}.png"))
        driver.execute_script(AXE)
        violations = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']})
              .then(r => done(r.violations.map(v => [
                v.id, v.impact, v.nodes.map(n => n.target.join(' ')).slice(0, 3)])))
              .catch(e => done([['axe failed', String(e), []]]));
            """
        )
        assert violations == [], f"{name} ({scheme}): {violations}"
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def shows(driver: Any, css: str, text: str) -> None:
    """Wait for the page a click opened to show ``text`` in ``css``."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # One script call reads the text, so a page swapped in between finding an element and
    # reading it cannot fail the wait; an error while the old page unloads is retried.
    def there(d: Any) -> bool:
        found = d.execute_script("return document.querySelector(arguments[0])?.textContent", css)
        return text in (found or "")

    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(there)


def text_of(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    part = msg.get_body(("plain",))  # type: ignore[attr-defined]
    return str(part.get_content())


def run_digest(site: Site, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "digest", "run", "--no-fetch", "--config", str(site.config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def mail_to(site: Site, address: str, since: int = 0) -> list[bytes]:
    return [raw for _, rcpt, raw in site.smtp.messages[since:] if address in rcpt]


def test_the_whole_journey_in_a_browser(
    served: tuple[Site, str, dict[str, str]], browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    site, base, env = served
    d = browser

    # The home page, then the sign-up form.
    d.get(base + "/subscribe")
    look(d, "subscribe")
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert (
        d.switch_to.active_element.get_attribute("class") == "skip"
    )  # focus starts at the skip link
    d.find_element(By.ID, "f-email").send_keys("grace@example.org")
    d.find_element(By.ID, "f-name").send_keys("Grace")
    d.find_element(By.ID, "f-interests").send_keys(
        "Speech recognition, text-to-speech and audio language models."
    )
    d.find_element(By.ID, "f-keywords").send_keys("speech, audio")
    d.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    shows(d, "h1", "Check your inbox")
    look(d, "check-inbox")
    assert not (site.root / "subscribers" / "grace.toml").exists()

    # The confirmation mail: its link opens a page whose button confirms.
    [confirm_mail] = mail_to(site, "grace@example.org")
    link = site.link("/confirm", text_of(confirm_mail), base=base)
    d.get(link)
    look(d, "confirm")
    assert not (site.root / "subscribers" / "grace.toml").exists()  # the GET changed nothing
    d.find_element(By.CSS_SELECTOR, "main form button").click()
    shows(d, "h1", "You are subscribed")
    look(d, "welcome")
    assert load_profile(site.root / "subscribers" / "grace.toml").active

    # The first digest.
    before = len(site.smtp.messages)
    run_digest(site, env)
    [digest_mail] = mail_to(site, "grace@example.org", before)
    text = text_of(digest_mail)
    assert "Speech recognition" in text

    # View in browser, as sent.
    d.get(site.link("/view", text, base=base))
    look(d, "view")
    cards = d.find_elements(By.CSS_SELECTOR, "article.card .title")
    assert cards and cards[0].text.strip()[:20] in text.replace("\n", " ")

    # Vote from the mail: its first paper's "more like this" link; then undo and vote again.
    vote_link = site.link("/vote", text, base=base)
    assert "&d=up&" in vote_link
    d.get(vote_link)
    shows(d, "h1", "More like this?")
    look(d, "vote")
    assert site.store().votes("grace@example.org") == {}  # opening the link records nothing
    d.find_element(By.CSS_SELECTOR, "main form button").click()
    shows(d, "h1", "Noted: more like this")
    d.find_element(By.CSS_SELECTOR, "main form button").click()  # undo
    shows(d, "h1", "More like this?")
    assert site.store().votes("grace@example.org") == {}
    d.find_element(By.CSS_SELECTOR, "main form button").click()
    shows(d, "h1", "Noted: more like this")
    votes = site.store().votes("grace@example.org")
    assert len(votes) == 1 and next(iter(votes.values()))[0] == 1

    # Change interests; the next digest reflects them.
    d.get(site.link("/preferences", text, base=base))
    look(d, "preferences")
    box = d.find_element(By.ID, "f-interests")
    box.clear()
    box.send_keys("Video generation with diffusion models and image synthesis.")
    kw = d.find_element(By.ID, "f-keywords")
    kw.clear()
    kw.send_keys("video, diffusion")
    d.find_element(By.CSS_SELECTOR, "button[value=save]").click()
    shows(d, ".notice", "Saved.")
    assert "Video generation" in load_profile(site.root / "subscribers" / "grace.toml").interests
    store = site.store()
    more = parse((FEEDS / "hf-daily-papers-2024-10-15.json").read_bytes(), "hf")
    store.upsert_papers(more, datetime.now(UTC))  # new papers since the first digest
    store.close()
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    before = len(site.smtp.messages)
    out = run_digest(site, env, "--edition", tomorrow)
    [second] = mail_to(site, "grace@example.org", before) or [out.encode()]
    second_text = text_of(second)
    assert "Video generation with diffusion models" in second_text
    assert re.search(r"matches '[^']*(video|diffusion)", second_text, re.I), second_text[:3000]

    # Unsubscribe through the GET page's button.
    d.get(site.link("/unsubscribe", second_text, base=base))
    look(d, "unsubscribe")
    d.find_element(By.CSS_SELECTOR, "button[value=unsubscribe]").click()
    shows(d, "main p", "unsubscribed")
    assert not load_profile(site.root / "subscribers" / "grace.toml").active

    # The one-click POST, as a mail provider sends it from the List-Unsubscribe header.
    [ada_mail] = mail_to(site, "ada@example.org")[:1]
    msg = email.message_from_bytes(ada_mail, policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(http[^>]+)>", str(msg["List-Unsubscribe"])).group(1)  # type: ignore[union-attr]
    r = httpx.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10, follow_redirects=False)
    assert r.status_code == 200
    assert not load_profile(site.root / "subscribers" / "ada.toml").active

    # The public pages.
    d.get(base + "/")
    look(d, "home")
    d.get(base + "/search?q=speech+recognition")
    look(d, "search")
