"""Quoted-printable shortcuts and cached header pieces give the same bytes as the long way."""

from __future__ import annotations

import random
from email.utils import formataddr

import pytest

from digest.delivery._headers import address_header, clean, signed_url
from digest.qp import QpEncoder, _encoded, _qp_line
from digest.tokens import UNSUBSCRIBE, Tokens


def samples(seed: int, alphabet: str, count: int, longest: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest))) for _ in range(count)
    ]


@pytest.mark.parametrize(
    "alphabet",
    [
        "ab .=-é\t\n" + "x" * 10,
        "abc \n" + "y" * 20,
        "ab.\n" + "z" * 30,
        "a" * 5 + "\n",
        "ab .=-é·\t\n" + "x" * 10,
        "= \n·" + "w" * 40,
        "\u2028\ud800a b\n",
        "ab\r\n .",
    ],
)
def test_parts_encode_exactly_as_the_whole_text(alphabet: str) -> None:
    """Soft line breaks, escapes and leading dots where the whole text has them, whatever
    the cut into parts; the second time from the caches, the same again."""
    rng = random.Random(len(alphabet))
    pool = samples(len(alphabet), alphabet, 300, 200)
    small = QpEncoder(limit=3000)  # caches cleared again and again
    for _ in range(1500):
        parts = rng.sample(pool, rng.randint(0, 6))
        whole = QpEncoder().encode("".join(parts))
        assert small.encode_parts(parts) == whole, parts
        assert small.encode_parts(parts) == whole, parts


def test_printable_lines_encode_as_b2a_qp_does() -> None:
    """A line of printable ASCII is escaped and cut without b2a_qp: the same bytes as the
    long way (b2a_qp, then leading dots mended), at every length around the 76 columns
    and wherever an "=" (three columns once escaped) or a "." falls."""
    lines = [
        "a" * n if at is None else "a" * at + c + "a" * (n - at - 1)
        for n in range(60, 240)
        for at in [None, *range(n)]
        for c in ("=", ".")
    ]
    lines += samples(9, "ab =.", 3000, 400) + samples(10, "=" * 3 + "x" * 30 + ".", 3000, 400)
    for line in lines:
        assert _qp_line(line) == _encoded(line), line


@pytest.mark.parametrize(
    "display",
    ["", "Ada", "Chloé Dubois", 'Ben "B" O\'Neil', "a,b (c)", "x\r\ny", "Jürgen " * 12, "é" * 40],
)
@pytest.mark.parametrize("address", ["a@example.org", "a.rather.long.address@sub.example.org"])
def test_address_header_as_formataddr(display: str, address: str) -> None:
    shown = clean(display)[:100]
    want = f"To: {formataddr((shown, address), charset='utf-8')}"
    got = address_header("To", display, address)
    if len(want) <= 78 or not shown:
        assert got == want
    else:
        assert all(len(line) <= 78 for line in got.split("\r\n")) and got.endswith(f"<{address}>")
    assert address_header("To", display, address) == got  # the second time, remembered


def test_signed_url_remembered_per_secret() -> None:
    base = "https://example.org/unsubscribe"
    one = signed_url(base, Tokens(b"one", "l.example.org"), "a@example.org")
    assert one.endswith(
        "token=" + Tokens(b"one", "l.example.org").make(UNSUBSCRIBE, "a@example.org")
    )
    assert signed_url(base, Tokens(b"two", "l.example.org"), "a@example.org") != one
    assert signed_url(base, Tokens(b"one", "m.example.org"), "a@example.org") != one
    assert signed_url(base, Tokens(b"one", "l.example.org"), "a@example.org") == one
