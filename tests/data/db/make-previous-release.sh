#!/usr/bin/env bash
# Rebuilds previous-release.db: a database made by the release before schema migrations
# (commit e8df0b5, the last one before the store became a package), used by
# tests/test_migrations.py to check that `digest db upgrade` takes such a database up to
# date without losing a row. Run from the repository root with the project's .venv:
#     bash tests/data/db/make-previous-release.sh
set -euo pipefail
root="$(pwd)"
python="$root/.venv/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$root" archive e8df0b5 | tar -x -C "$work"
proj="$work/project"
mkdir -p "$proj"
cp -r "$work/subscribers" "$proj/subscribers"
cat > "$proj/config.toml" <<TOML
database = "sqlite:///digest.db"
outbox = "outbox"

[sender]
address = "digest@example.org"
name = "Paper Digest"

[unsubscribe]
url = "https://digest.example.org/unsubscribe"
mailto = "unsubscribe@example.org"

[[feeds]]
name = "huggingface"
url = "$root/tests/data/feeds/hf-daily-papers-2026-06-12.json"
TOML
export PYTHONPATH="$work" DIGEST_UNSUBSCRIBE_SECRET=previous-release-fixture
cd "$proj"
# One edition out through the outbox: papers, feed health, an edition, deliveries, sent papers, a run.
"$python" -m digest run --config config.toml --edition 2026-06-12
# A suppression, as `digest unsubscribe` records it (the file is set inactive too).
"$python" -m digest unsubscribe ben@example.org --config config.toml --reason "asked by email"
# A delivery left deferred by a relay and one left "sending" by a crash, through that
# release's own store, for the next edition.
"$python" - <<'PY'
from datetime import UTC, date, datetime
from digest.store import Store
s = Store("sqlite:///digest.db")
now = datetime(2026, 6, 13, 7, 0, tzinfo=UTC)
s.set_delivery("ada@example.org", date(2026, 6, 13), "deferred", now,
               message_id="<previous-release-ada@example.org>", reply="451 try later", attempt=True)
s.set_delivery("chloe@example.org", date(2026, 6, 13), "sending", now,
               message_id="<previous-release-chloe@example.org>", attempt=True)
s.close()
PY
"$python" - <<'PY'
import sqlite3
db = sqlite3.connect("digest.db")
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.execute("PRAGMA journal_mode=DELETE")
db.execute("VACUUM")
db.close()
PY
cp digest.db "$root/tests/data/db/previous-release.db"
sqlite3 "$root/tests/data/db/previous-release.db" .tables 2>/dev/null || true
