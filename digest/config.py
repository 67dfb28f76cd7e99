"""Reading and validating ``config.toml``; secrets come from the environment only."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from .errors import ConfigError
from .tokens import Tokens, secret_problem
from .validation import Strict, load_model, read_toml

DEFAULT_CONFIG = Path("config.toml")


class Sender(Strict):
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str = "Paper Digest"
    organization: str = ""
    postal_address: str = ""
    reply_to: str = ""


# The name of an environment variable holding a secret: capital letters, digits and "_",
# as environment variables are named. A secret pasted there by mistake rarely looks like
# that, and the value is never repeated in an error (``validation.describe``).
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")


def env_name(value: str) -> str:
    if value and not _ENV_NAME.fullmatch(value):
        raise ValueError(
            "must be the NAME of an environment variable, in capital letters, digits and _ "
            "(e.g. DIGEST_SMTP_PASSWORD), never the secret itself (the value is not shown "
            "here); put the secret in that variable"
        )
    return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: localhost, 127.0.0.0/8 or ::1."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Smtp(Strict):
    host: str = ""
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    user: str = ""
    password_env: str = "DIGEST_SMTP_PASSWORD"
    # security = "none" with a user sends the password in clear text: refused, unless the
    # relay is on this machine or this says the network path is trusted.
    insecure_cleartext_auth: bool = False
    ca_file: str = ""
    timeout: float = Field(default=30.0, gt=0)
    connections: int = Field(default=1, ge=1, le=64)
    max_per_connection: int = Field(default=100, ge=1)
    rate_per_second: float = Field(default=0.0, ge=0)
    rate_per_hour: int = Field(default=0, ge=0)
    retries: int = Field(default=3, ge=0, le=20)
    retry_backoff: float = Field(default=2.0, ge=0)
    local_hostname: str = ""

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return env_name(value)

    @model_validator(mode="after")
    def _no_cleartext_password(self) -> Smtp:
        if (
            self.security == "none"
            and self.user
            and self.host
            and not is_loopback(self.host)
            and not self.insecure_cleartext_auth
        ):
            raise ValueError(
                f'security = "none" with user set would send the password in clear text to '
                f'{self.host}; use security = "starttls" (port 587) or "ssl" (port 465), or, '
                "only if the network to that host is trusted, set insecure_cleartext_auth = true"
            )
        return self


class Http(Strict):
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    backoff: float = Field(default=2.0, ge=0)
    max_retry_after: float = Field(default=120.0, ge=0)
    max_bytes: int = Field(default=25_000_000, gt=0)
    arxiv_delay: float = Field(default=3.0, ge=0)


class Ranking(Strict):
    lexical_weight: float = Field(default=0.7, ge=0)
    semantic_weight: float = Field(default=1.0, ge=0)
    liked_weight: float = Field(default=1.0, ge=0)
    feedback: float = Field(default=1.0, ge=0)
    feedback_papers: int = Field(default=10, ge=1, le=100)
    popularity_weight: float = Field(default=0.3, ge=0)
    freshness_weight: float = Field(default=0.2, ge=0)
    freshness_half_life_days: float = Field(default=3.0, gt=0)
    author_boost: float = Field(default=3.0, ge=0)
    category_boost: float = Field(default=0.3, ge=0)
    diversity: float = Field(default=0.15, ge=0, le=1)
    duplicate_similarity: float = Field(default=0.9, gt=0, le=1)
    # The interests' words weighed sentence by sentence in the lexical query, so that a
    # short first sentence is not drowned by a long one (false: by counts over the text).
    balanced_terms: bool = True
    # Each paper's relevance mixed with the mean relevance of its nearest papers of the
    # edition (embedding cosine): 0 = off.
    smoothing: float = Field(default=0.35, ge=0, lt=1)
    smoothing_neighbours: int = Field(default=10, ge=1, le=100)
    # Votes, liked and disliked papers feed a per-subscriber model (ranking/_votes.py);
    # off, liked papers lift their nearest neighbours (liked_weight) and votes are ignored.
    vote_model: bool = True
    vote_toward: float = Field(default=1.0, ge=0)
    vote_away: float = Field(default=0.1, ge=0)
    vote_toward_ramp: float = Field(default=0.0, ge=0)
    vote_weight: float = Field(default=0.5, ge=0)
    vote_evidence: float = Field(default=10.0, ge=0)
    vote_ridge: float = Field(default=3.0, gt=0)
    vote_category_weight: float = Field(default=0.0, ge=0)
    vote_author_weight: float = Field(default=0.5, ge=0)
    vote_max: int = Field(default=100, ge=1, le=10_000)
    vote_smooth: bool = True  # the vote score smoothed over neighbours with the relevance
    vote_exact: bool = False  # solve the ridge exactly (slower; no better on the dev week)
    # A paper less similar than this to the subscriber's interests (the cosine of the
    # edition-centered embeddings, after votes and feedback) is never sent: a quiet day
    # sends fewer papers. 0 = off. Calibrated on editions of hundreds of papers: editions
    # with fewer than relevance_floor_papers papers are sent without it.
    relevance_floor: float = Field(default=0.51, ge=0, le=1)
    relevance_floor_papers: int = Field(default=100, ge=1)


class Render(Strict):
    abstract_chars: int = Field(default=600, ge=80)
    max_html_bytes: int = Field(default=100_000, ge=10_000)
    base_url: str = ""


class Unsubscribe(Strict):
    url: str = ""
    mailto: str = ""
    secret_env: str = "DIGEST_UNSUBSCRIBE_SECRET"
    list_id: str = ""

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return env_name(value)


class Web(Strict):
    """``digest serve``: the subscribers' pages (subscribe, preferences, votes, unsubscribe)."""

    base_url: str = ""  # the public address of the pages; every link in a digest starts with it
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    secret_env: str = ""  # empty: the [unsubscribe] secret_env variable signs every link
    signup: Literal["open", "closed", "domains"] = "open"
    domains: list[str] = Field(default_factory=list)  # with signup = "domains"
    confirm_hours: int = Field(default=48, ge=1, le=24 * 14)
    max_body_bytes: int = Field(default=16_384, ge=1024, le=1_000_000)
    ip_per_hour: int = Field(default=30, ge=1)  # subscribe / resend attempts per IP
    address_per_day: int = Field(default=3, ge=1)  # confirmation mails to one address
    search_results: int = Field(default=20, ge=1, le=100)
    proxy_ips: str = ""  # a reverse proxy's address: its X-Forwarded-For is believed

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return env_name(value)

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        from urllib.parse import urlsplit

        value = value.strip().rstrip("/")
        if not value:
            return value
        parts = urlsplit(value)
        loopback = (parts.hostname or "") in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError(
                f"{value!r} must be an https:// URL (plain http only for localhost or "
                "127.0.0.1, to try it out)"
            )
        if parts.query or parts.fragment or not parts.netloc:
            raise ValueError(
                f"{value!r}: give the site's address only, like https://papers.example.org"
            )
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in value if d.strip()]


class Dkim(Strict):
    selector: str = ""
    domain: str = ""
    private_key_file: str = ""


class Schedule(Strict):
    cron: str = "0 7 * * *"
    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(default=3600, ge=1)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a cron expression ({exc}); use 5 fields: "
                "minute hour day month weekday, e.g. '0 7 * * *'"
            ) from exc
        return value


class Feed(Strict):
    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    enabled: bool = True
    skip_replacements: bool = False
    date: str = ""
    sort: str = ""
    limit: int = Field(default=0, ge=0)
    pages: int = Field(default=1, ge=1, le=20)
    # For a paper several feeds carry: how far this feed's values are believed (0-100), and
    # whose official source it is ("auto": arXiv for arxiv.org urls, "huggingface" for the
    # huggingface.co API; "none": nobody's)
    trust: int = Field(default=50, ge=0, le=100)
    official: Literal["auto", "arxiv", "huggingface", "none"] = "auto"


class Config(Strict):
    database: str = "sqlite:///digest.db"
    subscribers_dir: str = "subscribers"
    outbox: str = "outbox"
    templates_dir: str = ""
    timezone: str = "UTC"
    empty_digest: Literal["skip", "note"] = "skip"
    lock_file: str = ""
    sender: Sender
    smtp: Smtp = Smtp()
    http: Http = Http()
    ranking: Ranking = Ranking()
    render: Render = Render()
    unsubscribe: Unsubscribe = Unsubscribe()
    dkim: Dkim = Dkim()
    web: Web = Web()
    schedule: Schedule = Schedule()
    feeds: list[Feed] = Field(default_factory=list)
    # Set by load(): the folder relative paths are resolved against.
    base_dir: Path = Field(default=Path("."), exclude=True)
    path: Path = Field(default=DEFAULT_CONFIG, exclude=True)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        return check_database(value)

    @model_validator(mode="after")
    def _unique_feeds(self) -> Config:
        names = [f.name for f in self.feeds]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"feeds: duplicate feed name {dupes[0]!r}; give each feed its own name"
            )
        return self

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(os.path.normpath(self.base_dir / p))

    @property
    def database_url(self) -> str:
        prefix = "sqlite:///"
        if self.database.startswith(prefix) and not self.database.startswith(prefix + "/"):
            rest = self.database[len(prefix) :]
            if rest and rest != ":memory:":
                return prefix + str(self.resolve(rest))
        scheme, sep, rest = self.database.partition("://")
        if scheme in ("postgres", "postgresql"):  # the driver we ship: psycopg 3
            return f"postgresql+psycopg{sep}{rest}"
        return self.database

    @property
    def subscribers_path(self) -> Path:
        return self.resolve(self.subscribers_dir)

    @property
    def outbox_path(self) -> Path:
        return self.resolve(self.outbox)

    @property
    def templates_path(self) -> Path | None:
        return self.resolve(self.templates_dir) if self.templates_dir else None

    @property
    def lock_path(self) -> Path:
        if self.lock_file:
            return self.resolve(self.lock_file)
        return self.base_dir / ".digest.lock"

    def smtp_password(self) -> str:
        """The SMTP password from the environment (never from the file)."""
        env = self.smtp.password_env
        if not self.smtp.user:
            return ""
        value = os.environ.get(env, "") if env else ""
        if not value:
            raise ConfigError(
                f"{self.path}: [smtp] user is set but environment variable {env or '(none)'} "
                "is empty; export the password there"
            )
        return value

    @property
    def list_label(self) -> str:
        """The list's name as links are signed for it: the List-Id label."""
        raw = " ".join(self.unsubscribe.list_id.split())
        if "<" in raw and ">" in raw:
            raw = raw[raw.index("<") + 1 : raw.rindex(">")]
        return raw or "digest." + self.sender.address.rsplit("@", 1)[-1].lower()

    @property
    def link_secret_env(self) -> str:
        return self.web.secret_env or self.unsubscribe.secret_env

    def link_secret(self) -> bytes:
        """The secret signing every link (unsubscribe, preferences, votes, confirm), from
        the environment; ConfigError when it is not set."""
        env = self.link_secret_env
        value = os.environ.get(env, "") if env else ""
        if not value:
            raise ConfigError(
                f"{self.path}: links in the digest are signed, but environment variable "
                f"{env or '(none)'} is empty; export a long random secret there "
                "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value.encode()

    def check_link_secret(self) -> None:
        """ConfigError when the signing secret is missing or too weak to be safe."""
        problem = secret_problem(self.link_secret().decode())
        if problem:
            raise ConfigError(f"{self.path}: the secret in {self.link_secret_env} {problem}")

    def link_tokens(self) -> Tokens:
        return Tokens(self.link_secret(), self.list_label)

    def web_url(self, path: str) -> str:
        """``path`` on the web app (``[web] base_url``), or "" when it is not set."""
        return self.web.base_url + path if self.web.base_url else ""

    def feed_base(self, url: str) -> str:
        """A feed url, with a relative local path resolved against the config folder."""
        if "://" in url:
            return url
        return str(self.resolve(url))


_DATABASES = ("sqlite", "postgres", "postgresql", "postgresql+psycopg")


def check_database(value: str) -> str:
    """A SQLite or PostgreSQL URL, with no password in it (PGPASSWORD or ~/.pgpass hold it)."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in _DATABASES:
        raise ValueError('must be "sqlite:///path/to/digest.db" or "postgresql://user@host/dbname"')
    if scheme != "sqlite" and ":" in rest.partition("/")[0].rpartition("@")[0]:
        raise ValueError(
            "holds a password: leave it out of the file and set PGPASSWORD in the "
            "environment (or use ~/.pgpass)"
        )
    return value


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown timezone {value!r}; use an IANA name like 'Europe/Paris'"
        ) from exc
    return value


def load(path: Path | str = DEFAULT_CONFIG) -> Config:
    """Read and validate the config file; any problem is a one-line ``ConfigError``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"{path}: file not found; digest init writes one (and a folder to run from), "
            "or pass --config PATH"
        )
    data = read_toml(path, ConfigError)
    data = {**data, "base_dir": path.resolve().parent, "path": path}
    return load_model(path, data, Config, ConfigError)
