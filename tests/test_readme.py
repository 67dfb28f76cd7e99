"""Every example in the README runs as written: each ```sh block runs as a shell script, and
each ```console block's commands give the output shown, against the demo's data (after what
`make demo` does). A block that cannot run here says so on the line before it:

    <!-- not run by tests/test_readme.py: <why> -->

The sandbox: a copy of demo/ with ./config.toml its config (so `digest rank --subscriber
chloe` ranks for the demo's Chloé), the bundled feeds at tests/data/feeds, `digest` and
`.venv/bin/digest` on hand, and a HOME of its own.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT

README = ROOT / "README.md"
SKIP = re.compile(r"^<!-- not run by tests/test_readme\.py: (?P<why>\S.*\S) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")


@dataclass
class Block:
    line: int  # where it starts in the README (1-based)
    lang: str
    text: str
    skip: str  # why it is not run ("" when it is)


def blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        why = SKIP.match(before.strip())
        out.append(
            Block(i + 1, m.group("lang"), "\n".join(lines[i + 1 : end]), why["why"] if why else "")
        )
        i = end + 1
    return out


COMMANDS = [b for b in blocks() if b.lang in ("sh", "console")]


def test_every_command_block_is_run_or_says_why_not() -> None:
    assert COMMANDS, "no ```sh or ```console block found"
    for b in blocks():
        if b.lang in ("", "text") and re.search(
            r"^\$ |^\s*(digest|make|\.venv/bin/)", b.text, re.M
        ):
            pytest.fail(f"README.md:{b.line}: commands in a block without a language: mark it sh")
    ran = [b for b in COMMANDS if not b.skip]
    assert len(ran) >= len(COMMANDS) // 2, "most examples should run here"
    # Markers sit right before a block: one elsewhere is a typo that would skip nothing.
    lines = README.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        if line.startswith("<!-- not run by"):
            assert SKIP.match(line), f"README.md:{n + 1}: say why: {line}"
            nxt = next(x for x in lines[n + 1 :] if x.strip())
            assert nxt.startswith("```"), f"README.md:{n + 1}: the marker is not before a block"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(
        ROOT / "demo",
        root / "demo",
        ignore=shutil.ignore_patterns("outbox", "preview", "*.db*", ".digest.lock"),
    )
    (root / "tests" / "data").mkdir(parents=True)
    (root / "tests" / "data" / "feeds").symlink_to(ROOT / "tests" / "data" / "feeds")
    (root / "config.toml").symlink_to(root / "demo" / "config.toml")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    digest = Path(sys.executable).with_name("digest")
    assert digest.is_file(), f"{digest}: the digest command is not installed next to python"
    (bin_dir / "digest").symlink_to(digest)
    home = root / "home"
    home.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "DIGEST_UNSUBSCRIBE_SECRET": "readme-test-Tq8vN3xKp0LzR7mWc2YbH5sJd9Fg",
        "BROWSER": "true",  # --open "opens" without a browser
    }
    # What `make demo` does (but the venv): one edition for the three example subscribers.
    demo = subprocess.run(
        ["digest", "run", "--config", "demo/config.toml"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "3 sent" in demo.stdout
    return root, env


@pytest.mark.parametrize("block", COMMANDS, ids=lambda b: f"README.md:{b.line}")
def test_readme_block(block: Block, sandbox: tuple[Path, dict[str, str]]) -> None:
    if block.skip:
        pytest.skip(block.skip)
    root, env = sandbox
    if block.lang == "sh":
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.text],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, (
            f"README.md:{block.line}: exit {proc.returncode}\n{block.text}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
        return
    # console: "$ command" lines, each followed by the output it must give
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    for command, want in steps:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        said = (proc.stdout + proc.stderr).splitlines()
        assert said == want, f"README.md:{block.line}: $ {command}\n{said}\n!=\n{want}"
