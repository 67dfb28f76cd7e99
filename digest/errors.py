"""The project's exceptions: one base class, a few kinds; messages say what, which and why."""


class DigestError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code = 1


class ConfigError(DigestError):
    """config.toml is missing, malformed or invalid. Nothing is fetched or sent."""

    exit_code = 2


class UsageError(DigestError):
    """A command was given something it cannot use (an invalid address, a missing option)."""

    exit_code = 2


class ProfileError(DigestError):
    """A subscriber file is malformed or invalid."""


class FeedError(DigestError):
    """One feed could not be fetched or parsed."""


class RenderError(DigestError):
    """A template failed to render or compile."""


class SendError(DigestError):
    """A message could not be delivered."""


class AuthError(SendError):
    """The SMTP server refused our credentials: the run stops at once."""

    exit_code = 1


class LockedError(DigestError):
    """Another run holds the lock."""


class DatabaseError(DigestError):
    """The database cannot be reached or used."""


class SchemaError(DatabaseError):
    """The database's schema is not the one this release works with (``digest db upgrade``).
    Nothing is fetched or sent."""

    exit_code = 2


# ``extra=`` for a log record of a failure that a run's report (``digest run``, ``digest
# fetch``) lists too: the command line then shows it once, in the report.
IN_SUMMARY = {"in_summary": True}
