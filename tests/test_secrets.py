"""Credentials: a secret pasted where a variable's name goes is refused and never repeated,
the SMTP password never crosses the network in clear text unless asked loudly, and a
password that is not ASCII logs in (against the loopback SMTP server)."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from digest import config
from digest.delivery import deliver
from digest.errors import AuthError, ConfigError
from digest.store import Store
from tests.conftest import write_config
from tests.smtpserver import SmtpServer
from tests.test_send import addresses, clock, make_config, outgoing

SECRETS = ["hunter2!", "Tr0ub4dor&3", "correct horse battery staple", "s3cr3tpassw0rd", "pässwörd"]
KEYS = [("smtp", "password_env"), ("unsubscribe", "secret_env"), ("web", "secret_env")]
LINK_SECRET = "Zq3vN8xKp1LzR7mWc2YbH5sJd9FgT4uE"


@pytest.fixture(autouse=True)
def _link_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", LINK_SECRET)


@pytest.mark.parametrize(("table", "key"), KEYS)
@pytest.mark.parametrize("secret", SECRETS)
def test_a_secret_given_as_a_variable_name_is_refused_and_never_shown(
    tmp_path: Path, table: str, key: str, secret: str
) -> None:
    path = write_config(tmp_path, smtp=f'[{table}]\n{key} = "{secret}"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert f"{table}.{key}: must be the NAME of an environment variable" in message
    assert secret not in message  # it was echoed: "(got 'hunter2!')"
    assert info.value.exit_code == 2


@pytest.mark.parametrize("name", ["DIGEST_SMTP_PASSWORD", "MY_RELAY_PASS2", "_X", ""])
def test_environment_variable_names_are_accepted(tmp_path: Path, name: str) -> None:
    cfg = config.load(write_config(tmp_path, smtp=f'[smtp]\npassword_env = "{name}"\n'))
    assert cfg.smtp.password_env == name


def test_digest_check_never_prints_the_secret(tmp_path: Path) -> None:
    secret = "Tr0ub4dor&3"
    path = write_config(
        tmp_path,
        smtp=f'[unsubscribe]\nurl = "https://lists.example.org/u"\nsecret_env = "{secret}"\n',
    )
    done = subprocess.run(
        [sys.executable, "-m", "digest", "check", "--config", str(path), "-v"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unsubscribe.secret_env" in done.stderr
    assert secret not in done.stdout + done.stderr  # was printed twice over


# -- AUTH in clear text ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["smtp.example.org", "192.0.2.25", "10.0.0.1"])
def test_auth_without_tls_to_another_host_is_refused(tmp_path: Path, host: str) -> None:
    path = write_config(
        tmp_path, smtp=f'[smtp]\nhost = "{host}"\nport = 25\nsecurity = "none"\nuser = "ada"\n'
    )
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert (
        f'smtp: security = "none" with user set would send the password in clear text to {host}'
        in message
    )
    assert 'security = "starttls"' in message and "insecure_cleartext_auth = true" in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "localhost", "::1", "[::1]"])
def test_auth_without_tls_to_this_machine_is_allowed(tmp_path: Path, host: str) -> None:
    path = write_config(
        tmp_path, smtp=f'[smtp]\nhost = "{host}"\nport = 25\nsecurity = "none"\nuser = "ada"\n'
    )
    assert config.load(path).smtp.user == "ada"


def this_machines_address() -> str:
    """An IPv4 address of this machine that is not loopback (from its interfaces)."""
    for _, name in socket.if_nameindex():
        if name == "lo":
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:  # no IPv4 address on this interface
                continue
        address = socket.inet_ntoa(packed[20:24])
        if not ipaddress.ip_address(address).is_loopback:
            return address
    pytest.skip("this machine has no network address but loopback")


def run_against(
    tmp_path: Path,
    srv: SmtpServer,
    extra: str = "",
    user: str = "ada",
    password: str = "opensesame",
) -> subprocess.CompletedProcess[str]:
    from tests.test_claims import project

    cfg = project(tmp_path, srv.port, tmp_path / "digest.db", 2, 1)
    text = cfg.read_text().replace('host = "127.0.0.1"', f'host = "{srv.host}"')
    cfg.write_text(text.replace("[smtp]\n", f'[smtp]\nuser = "{user}"\n{extra}'))
    env = {**os.environ, "DIGEST_SMTP_PASSWORD": password}
    return subprocess.run(
        [sys.executable, "-m", "digest", "run", "--config", str(cfg)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# The relay this test stands for takes AUTH without TLS: that is the point.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_no_password_in_clear_text_to_a_relay_on_another_address(tmp_path: Path) -> None:
    """A real relay on this machine's network address (not loopback), without TLS: the run
    is refused before connecting; with the loud setting it logs in, and warns."""
    with SmtpServer(host=this_machines_address(), auth=("ada", "opensesame")) as srv:
        refused = run_against(tmp_path / "refused", srv)
        assert refused.returncode == 2, refused.stderr
        assert "would send the password in clear text" in refused.stderr
        assert srv.connections == 0 and srv.logins == []  # AUTH PLAIN went out before
        allowed = run_against(tmp_path / "allowed", srv, "insecure_cleartext_auth = true\n")
        assert srv.logins and set(srv.logins) == {("ada", True)}, allowed.stderr
        assert "sending the password in clear text" in allowed.stderr


# -- passwords that are not ASCII ----------------------------------------------------------------


@pytest.mark.parametrize("password", ["pässwörd€", "пароль-123", "密码🔑"])
def test_a_password_that_is_not_ascii_logs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", password)
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    try:
        with SmtpServer(auth=("zoë", password), tls="starttls") as srv:
            cfg = make_config(tmp_path, srv, user="zoë")
            summary = deliver(cfg, store, outgoing(addresses(2)), now=clock)
            assert srv.logins == [("zoë", True)]
        assert sorted(summary.sent) == addresses(2)  # was a UnicodeEncodeError traceback
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", password + "x")
        with SmtpServer(auth=("zoë", password), tls="starttls") as srv:
            cfg = make_config(tmp_path, srv, user="zoë")
            with pytest.raises(AuthError, match="authentication failed") as info:
                deliver(cfg, store, outgoing(addresses(3)), now=clock)
        assert password not in str(info.value)
    finally:
        store.close()


# The loopback relay takes AUTH without TLS, as `security = "none"` allows there.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_digest_run_with_a_password_that_is_not_ascii(tmp_path: Path) -> None:
    """A real `digest run`: a UTF-8 user and password log in and the run sends (exit 0);
    a wrong one is one line and exit 1, as the README says (`digest check --smtp`, the
    same login without ranking first), and neither password is shown."""
    password = "pässwörd€"
    with SmtpServer(auth=("zoë", password)) as srv:
        ok = run_against(tmp_path, srv, user="zoë", password=password)
        assert ok.returncode == 0, ok.stderr  # was a UnicodeEncodeError traceback, exit 1
        assert srv.logins == [("zoë", True)] and len(srv.messages) == 2
        bad = subprocess.run(
            [sys.executable, "-m", "digest", "check", "--smtp", "--config", "config.toml"],
            cwd=tmp_path,
            env={**os.environ, "DIGEST_SMTP_PASSWORD": password + "!"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert srv.logins[1:] == [("zoë", False)] and len(srv.messages) == 2
    assert bad.returncode == 1, bad.stderr
    assert "Traceback" not in bad.stderr
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("smtp: FAILED: ") and "authentication failed (535" in last
    assert password not in ok.stdout + ok.stderr + bad.stdout + bad.stderr
