from __future__ import annotations

from pathlib import Path

import pytest

from digest import config
from digest.errors import ConfigError

from .conftest import ROOT, write_config


def test_shipped_configs_are_valid() -> None:
    cfg = config.load(ROOT / "config.toml")
    assert cfg.smtp.security == "starttls"
    assert [f.name for f in cfg.feeds] == ["huggingface", "arxiv-cs.CL", "arxiv-cs.CV"]
    demo = config.load(ROOT / "demo" / "config.toml")
    for feed in demo.feeds:
        assert Path(demo.feed_base(feed.url)).is_file(), feed.url


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    cfg = config.load(write_config(tmp_path, 'database = "sqlite:///data/d.db"'))
    assert cfg.database_url == f"sqlite:///{tmp_path}/data/d.db"
    assert cfg.subscribers_path == tmp_path / "subscribers"
    assert cfg.outbox_path == tmp_path / "outbox"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('subscriber_dir = "x"', "subscriber_dir: unknown key; did you mean 'subscribers_dir'?"),
        ('[smtp]\nsecurty = "ssl"', "smtp.securty: unknown key; did you mean 'security'?"),
        ('[smtp]\nport = "twenty-five"', "smtp.port:"),
        ('[smtp]\nsecurity = "tls"', "smtp.security:"),
        ('[smtp]\npassword_env = "hunter2!"', "name of an environment variable"),
        ('timezone = "Mars/Olympus"', "unknown timezone"),
        ("[[feeds]]\nname = 'a'", "feeds[0].url: missing value"),
        ("database = ", "invalid TOML"),
        ('database = "mysql://digest@db/digest"', "database: "),
        ('database = "digest.db"', 'must be "sqlite:///'),
    ],
)
def test_bad_config_names_file_key_and_fix(tmp_path: Path, body: str, expected: str) -> None:
    path = write_config(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected.lower() in message.lower()
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_missing_sender_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('database = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match=r"sender: missing value"):
        config.load(path)
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.toml")


def test_duplicate_feed_names_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, feeds=[("a", "x.xml"), ("a", "y.xml")])
    with pytest.raises(ConfigError, match="duplicate feed name 'a'"):
        config.load(path)


def test_password_comes_from_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, smtp='[smtp]\nhost = "smtp.example.org"\nuser = "me"\n')
    cfg = config.load(path)
    monkeypatch.delenv("DIGEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="DIGEST_SMTP_PASSWORD"):
        cfg.smtp_password()
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "s3cret")
    assert cfg.smtp_password() == "s3cret"


def test_bad_schedule_cron_is_caught_on_load(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[schedule]\ncron = "every morning"\n')
    with pytest.raises(ConfigError, match=r"schedule.cron: .*not a cron expression"):
        config.load(path)


def test_postgres_urls_use_psycopg_and_never_hold_a_password(tmp_path: Path) -> None:
    for given in ("postgresql://digest@db.example.org/digest", "postgres://digest@db/digest"):
        cfg = config.load(write_config(tmp_path, f'database = "{given}"'))
        assert cfg.database_url.startswith("postgresql+psycopg://digest@")
    given = "postgresql+psycopg://digest:hunter2@db.example.org:5432/digest"
    with pytest.raises(ConfigError, match=r"holds a password.*PGPASSWORD") as info:
        config.load(write_config(tmp_path, f'database = "{given}"'))
    assert "hunter2" not in str(info.value)
