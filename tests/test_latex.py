"""LaTeX made readable: what the feed parsers store and what the rendered cards show."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import FeedError
from digest.latex import latex_to_text
from digest.rendering._textfmt import clean_text
from digest.sources import parse
from digest.sources._text import clean

DATA = Path(__file__).parent / "data"
FEEDS = DATA / "feeds"

# Author names, titles and abstracts as the feeds carry them.
FEED_CASES = [
    (
        r"Jaros{\l}aw \.Zygierewicz, J\"org, Kra{\ss}, S{\o}gaard",
        "Jarosław Żygierewicz, Jörg, Kraß, Søgaard",
    ),
    (
        r"Nikola Pi\v{z}urica, Milovi\'c, In\`es, Jakub\r{u}v, Fran\c{c}ois, Mart\'{\i}n",
        "Nikola Pižurica, Milović, Inès, Jakubův, François, Martín",
    ),
    (r"$\alpha$-cosymplectic", "α-cosymplectic"),
    (r"$H^3$Fusion and $J_1$-$J_2$", "H³Fusion and J₁-J₂"),
    (r"by $11.37\%$ and $1\times1$", "by 11.37% and 1×1"),
    (r"$F=\frac{\alpha^2}{\beta}$, $1/\sqrt{n}$", "F=α²/β, 1/√n"),
    (r"$\mathcal{E\mkern-2mu L}$", "EL"),
    (r"the $\ln\ln T$ term", "the ln ln T term"),
    (
        r"\textit{memories} at \href{https://x.org/y}{our site}",
        "memories at our site (https://x.org/y)",
    ),
    (r"costs $5 and $10", "costs $5 and $10"),  # money, not math
    (r"\gtrsim6.3% and 40~radians", "≳6.3% and 40 radians"),
    (r"an \unknowncommand stays", r"an \unknowncommand stays"),
]


def tsv_cases() -> list[tuple[str, str]]:
    rows = (DATA / "latex.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(r.split("\t")) for r in rows if r and not r.startswith("#")]  # type: ignore[misc]


# Cases neither of the two earlier converters handled alike, from the feeds and the eval set.
MORE_CASES = [
    (r"$H^3$3Fusion model", "H³3Fusion model"),
    (r"from $5-$10 a month", "from $5-$10 a month"),
    (r"costs \$5 and \$10", "costs $5 and $10"),
    (r"a gap (~30%) and Learning~(PRL) at /~user", "a gap (~30%) and Learning (PRL) at /~user"),
    (r"by 30\%$\sim$225\% and $\sim 0.1\%$", "by 30%∼225% and ∼ 0.1%"),
    (r"$b=\lceil\log_2 K\rceil$ and $O(T\ln T)$", "b=⌈log₂ K⌉ and O(T ln T)"),
    (r"$\lambda_{\min}(\Sigma)$", "λ_min(Σ)"),
    (r"$\alpha\log n$, $\log\alpha$, $x\log x$, $n\log_2 n$", "α log n, log α, x log x, n log₂ n"),
    (r"$\propto{(-\varepsilon_ur)}^{2/3}$", "∝(-ε_ur)^(2/3)"),
    (r"$\frac{h \sigma^2}{n \epsilon^2}$", "(h σ²)/(n ε²)"),
    (r"$O(\sqrt{T^{-1}+\text{const.}})$", "O(√(T⁻¹+const.))"),
    (r"$\mathrm{NO_3^-}$ and $\kappa \in \mathbb{N}$", "NO₃⁻ and κ ∈ ℕ"),
    (r"$\mathrm{Re} \in \{100, 250\}$", "Re ∈ {100, 250}"),
    (
        r"\href{https://x.org/r}{\texttt{Repo}} and \href{https://x.org/}{https://x.org/}",
        "Repo (https://x.org/r) and https://x.org/",
    ),
    (r"\textbf{\underline{Ca}}usal {\it Temporal} \textcolor{red}{Graph}", "Causal Temporal Graph"),
    (r"pages 10\textendash 20 \textemdash{} done", "pages 10–20 —{} done"),
    (r"$\unicode{x2013}$ and \LaTeX", "– and LaTeX"),
    (
        r"$\rm{SO}(3)$, ${\cal O}(n)$, $\kappa\propto{r}$, 0.47~$\mu\mathrm{m}$",
        "SO(3), O(n), κ∝r, 0.47 μm",
    ),
    (r"$\max_{\mathbf{w}\in\mathcal{W}} \mathbf{p}^{\top}A$", "max_(w∈W) pᵀA"),
    (
        r"$\tilde{O}(\frac{d^2}{(1-\gamma)^4\epsilon^2})$, $\frac{1}{(1-\gamma)}$",
        "O(d²/((1-γ)⁴ε²)), 1/(1-γ)",
    ),
    (
        r"{\color{black} Sure}, {\bf bold}, \it{it} and \textcolor{red}{red}",
        "Sure, bold, it and red",
    ),
    (r"\textbf{Andr\'e} and \emph{{\L}ojasiewicz}", "André and Łojasiewicz"),
    (r"\(\beta\)-VAE and $$ E=mc^2 $$", "β-VAE and E=mc²"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "want"), FEED_CASES + tsv_cases() + MORE_CASES)
def test_latex_made_readable(text: str, want: str) -> None:
    assert latex_to_text(text) == want


def test_none_and_plain_text() -> None:
    assert latex_to_text(None) == ""
    plain = "Plain text, 5% better; no markup at all."
    assert latex_to_text(plain) is plain


@pytest.mark.parametrize("text", [t for t, _ in FEED_CASES + tsv_cases() + MORE_CASES])
def test_converting_twice_changes_nothing(text: str) -> None:
    once = latex_to_text(text)
    assert latex_to_text(once) == once


def test_cards_leave_what_the_sources_cleaned() -> None:
    """Cards clean text the sources already cleaned: the second pass must not alter it."""
    fields: list[str] = []
    for path in sorted(FEEDS.iterdir()):
        if path.name == "SOURCES.md":
            continue
        try:
            papers = parse(path.read_bytes(), "test")
        except FeedError:
            continue  # the error and empty-document fixtures
        fields += [f for p in papers for f in (p.title, p.abstract, *p.authors)]
    assert len(fields) > 1000
    assert [f for f in fields if clean_text(f) != f] == []


def test_sources_and_cards_read_the_same() -> None:
    raw = r"Kra{\ss}: $\alpha$-stable   \textit{bounds} for $\mathbb{R}^d$ at 95\%"
    assert clean(raw, is_html=False) == clean_text(raw) == "Kraß: α-stable bounds for ℝ^d at 95%"
    assert clean_text(clean(raw, is_html=False)) == clean(raw, is_html=False)
