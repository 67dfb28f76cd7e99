"""digest as a new user gets it: a wheel built from this repository, installed in a fresh
venv and run from a folder of its own (no checkout in sight): ``digest init``, then ``digest
run`` on bundled feeds. The built-in templates and the skeleton are package data."""

from __future__ import annotations

import email
import email.policy
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from digest.config import load

from .conftest import FEEDS, ROOT

pytestmark = pytest.mark.slow


def sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the repository's sources (the checkout is left as it is)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "digest", src / "digest", ignore=skip)
    shutil.copytree(ROOT / "templates", src / "templates", ignore=skip)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, src],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    # What make install and pip install show a new user: no screenful of setuptools warnings
    # (a license table, data folders missing from the package list).
    assert "Warning" not in build.stderr, build.stderr
    (wheel,) = dist.glob("digest-*.whl")
    return wheel


def test_a_wheel_installed_in_a_fresh_venv_starts_from_digest_init(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates").rglob("*"):
        if template.suffix in (".j2", ".css"):
            assert f"digest/templates/{template.relative_to(ROOT / 'templates')}" in names
    assert "digest/web/categories.json" in names
    assert {"digest/skeleton/config.toml", "digest/skeleton/subscriber.toml"} <= names
    assert not any(n.startswith(("tests/", "demo/", "share/")) for n in names)

    # A fresh venv with only the wheel installed; the libraries digest needs come from
    # this test's environment (a path in a .pth file: no network, and the checkout's
    # editable install is not picked up, as .pth files there are not read).
    env = tmp_path / "env"
    sh(sys.executable, "-m", "venv", "--without-pip", env, cwd=tmp_path)
    python = env / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
    sh(*pip, "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    site = sh(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
    )
    Path(site.strip(), "libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    home = tmp_path / "home"
    home.mkdir()
    clean = {
        "PATH": f"{env / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "DIGEST_UNSUBSCRIBE_SECRET": "install-test-Tq8vN3xKp0LzR7mWc2YbH5sJd9Fg",
    }
    where = sh(python, "-c", "import digest; print(digest.__file__)", cwd=home, env=clean)
    assert where.startswith(str(env)), where  # the wheel's digest, not the checkout's
    pages = sh(
        python,
        "-c",
        "from digest.rendering import builtin_templates as b; print(b() / 'web' / 'home.html.j2')",
        cwd=home,
        env=clean,
    ).strip()
    assert pages.startswith(str(env)) and Path(pages).is_file(), pages  # digest serve's pages

    out = sh("digest", "init", "lab", "--email", "ada@lab.example.org", cwd=home, env=clean)
    lab = home / "lab"
    assert "created lab/config.toml" in out and "created lab/subscribers/ada.toml" in out
    assert "cd lab, then: digest check" in out
    assert (lab / "config.toml").read_text() == (ROOT / "config.toml").read_text()
    assert (lab / "outbox").is_dir()

    # Offline: the bundled feeds instead of the live ones (the rest as init wrote it).
    text = (lab / "config.toml").read_text()
    text = text[: text.index("\n[[feeds]]\n") + 1] + "".join(
        f'[[feeds]]\nname = "{name}"\nurl = "{FEEDS / file}"\n\n'
        for name, file in (
            ("huggingface", "hf-daily-papers-2026-06-12.json"),
            ("arxiv-cs.LG", "arxiv-rss-new-format-2024-11-28-trimmed.xml"),
        )
    )
    (lab / "config.toml").write_text(text)
    check = subprocess.run(
        ["digest", "check"], cwd=lab, env=clean, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "1 subscribers OK, 0 broken" in check.stdout
    run = sh("digest", "run", cwd=lab, env=clean)
    assert "ada@lab.example.org: " in run and "1 sent" in run
    (message,) = (lab / "outbox").rglob("*.eml")
    msg = email.message_from_bytes(message.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage) and msg["To"] == "ada@lab.example.org"
    html = msg.get_body(("html",))
    assert html is not None and 'class="dg-card"' in html.get_content()  # packaged templates


def test_the_demo_keeps_to_demo_and_make_install_leaves_out_the_test_tools() -> None:
    """make demo reads and writes only demo/ (its subscribers, outbox, database, lock), so
    it cannot touch what the real config.toml uses; make install installs digest and what
    it needs to run, not the test and lint tools."""
    demo, real = load(ROOT / "demo" / "config.toml"), load(ROOT / "config.toml")
    for name in ("subscribers_path", "outbox_path", "lock_path", "database_url"):
        mine, theirs = getattr(demo, name), getattr(real, name)
        path = Path(str(mine).removeprefix("sqlite:///"))
        assert path.resolve().is_relative_to((ROOT / "demo").resolve()), (name, mine)
        assert mine != theirs, name

    def dry_run(target: str) -> list[str]:  # the commands make would run, none run
        out = sh("make", "-n", "-B", target, cwd=ROOT)
        return [line for line in out.splitlines() if line.strip()]

    demo_steps = dry_run("demo")
    removed = [w for line in demo_steps if line.startswith("rm ") for w in line.split()[2:]]
    assert removed and all(w.startswith("demo/") for w in removed), removed
    assert any("digest run --config demo/config.toml" in line for line in demo_steps)
    install = dry_run("install")
    assert any("pip install" in line and "-e ." in line for line in install), install
    assert not any("[dev]" in line for line in install), install
