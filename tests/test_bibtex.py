"""The BibTeX reader: exports from Zotero, Mendeley and Google Scholar, LaTeX markup."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.subscribers._bibtex import BibtexError, entries, read_bibtex

DATA = Path(__file__).parent / "data" / "rank"


def test_reads_titles_and_abstracts_of_a_mixed_export() -> None:
    pairs = read_bibtex(DATA / "liked.bib")
    assert [t for t, _ in pairs] == [
        "IndexTTS2: A Breakthrough in Emotionally Expressive and Duration-Controlled "
        "Auto-Regressive Zero-Shot Text-to-Speech",
        "Investigating Stochastic Methods for Prosody Modeling in Speech Synthesis",
    ]
    abstract = pairs[0][1]
    assert abstract.startswith("Large-scale text-to-speech (TTS) models")
    assert "\n" not in abstract and "  " not in abstract
    assert pairs[1][1] == ""  # Google Scholar exports carry no abstract


def test_latex_accents_macros_and_concatenation() -> None:
    found = list(entries((DATA / "liked.bib").read_text(encoding="utf-8")))
    assert len(found) == 2  # @comment and @string are not entries
    assert found[1]["author"] == "Müller, Jérôme and García, Ana"
    assert found[1]["booktitle"] == "arXiv preprint cs.SD"  # @string macro, then '#'
    assert found[0]["journal"] == "arXiv preprint"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (r"{\"O}sterreich", "Österreich"),
        (r"Fran{\c c}ois", "François"),
        (r"Ha\v{c}ek", "Haček"),
        (r"Stra{\ss}e", "Straße"),
        (r"{\o}resund", "øresund"),
        (r"Pok\'{e}mon", "Pokémon"),
        (r"na\"{\i}ve", "naïve"),
        (r"Speech \& Audio: 50\% faster", "Speech & Audio: 50% faster"),
        (r"pages 1--2 \emph{really}", "pages 1\u20132 really"),
        (r"{{BERT}}: pre-training", "BERT: pre-training"),
    ],
)
def test_latex_to_text(raw: str, clean: str) -> None:
    text = f"@article{{k,\n  title = {{{raw}}},\n}}\n"
    assert next(entries(text))["title"] == clean


def test_entry_forms(tmp_path: Path) -> None:
    text = """
    Some text before the first entry, e.g. an e-mail like someone@example.org.
    @Article(paren_style, title = "Parenthesized entry", year = 2020)
    @misc{no_fields}
    @book{braces,
      title = {Nested {Braces} and "quotes" inside},
      abstract = "Quoted {"braced quotes"} text"
    }
    @inproceedings{missing_title, year = {2021}}
    """
    found = list(entries(text))
    assert [e.get("title") for e in found] == [
        "Parenthesized entry",
        'Nested Braces and "quotes" inside',
        None,
    ]
    assert found[1]["abstract"] == 'Quoted "braced quotes" text'
    path = tmp_path / "export.bib"
    path.write_text(text, encoding="utf-8")
    assert [t for t, _ in read_bibtex(path)] == [
        "Parenthesized entry",
        'Nested Braces and "quotes" inside',
    ]


def test_not_bibtex_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "library.bib"
    path.write_text("This is a CSV export, not BibTeX.\ntitle,year\n", encoding="utf-8")
    with pytest.raises(BibtexError, match="no BibTeX entries with a title"):
        read_bibtex(path)
    path.write_text("", encoding="utf-8")
    assert read_bibtex(path) == []
    with pytest.raises(BibtexError, match="is a folder"):
        read_bibtex(tmp_path)
