"""The staff directory: CSV import as HR exports give it, re-import, supervisor status, search ranking."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.directory import (
    Directory,
    DirectoryError,
    DirectoryImportError,
    Entry,
    fold,
    sound,
)
from ivr.hours import STOCKHOLM
from ivr.store import EventLog

from .conftest import FIXTURES

FILES = FIXTURES / "directory"
GOOD = FILES / "good_sv_semicolon.csv"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def directory(tmp_path) -> Directory:
    with Directory(tmp_path / "ivr.db", now=lambda: NOW) as d:
        yield d


@pytest.fixture
def imported(directory) -> Directory:
    directory.import_csv(GOOD)
    return directory


def rewrite(source: Path, target: Path, *, encoding: str, delimiter: str,
            edit=lambda rows: rows) -> Path:
    """The good file as another program would write it: another encoding and delimiter."""
    rows = list(csv.reader(io.StringIO(source.read_text(encoding="utf-8-sig"), newline=""), delimiter=";"))
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(edit(rows))
    target.write_bytes(out.getvalue().encode(encoding))
    return target


# --------------------------------------------------------------------------- import


def test_excel_semicolon_utf8_bom_file_imports_every_entry_and_says_what_it_detected(directory) -> None:
    result = directory.import_csv(GOOD)
    assert (result.encoding, result.delimiter) == ("UTF-8 with BOM", ";")
    assert (result.entries, result.added, result.updated, result.removed) == (10, 10, 0, 0)
    asa = directory.get("1001")
    assert asa == Entry(
        id="1001", kind="person", name="Åsa Öberg", title="Bygglovshandläggare", unit="Bygglovsenheten",
        phone="+46334300123", extension="3123", email="asa.oberg@bollebygd.example.se",
        endpoints={"twilio": "client:asa", "asterisk": "PJSIP/3123"}, languages=("sv", "en", "fi"),
        topics=("strandskydd",), hours="mån-fre 8-16", status="available")
    unit = directory.get("u-bygglov")
    assert unit.kind == "unit" and unit.unit == "Bygglovsenheten" and unit.topics[0] == "bygglov"
    johan = directory.get("1005")
    assert johan.topics == ("rivningslov", "ovårdade tomter")  # a quoted ";" inside a cell splits the list
    assert johan.endpoints == {"twilio": "+46701740605"}  # "070..." would be normalised the same way
    maria = directory.get("1006")
    assert (maria.status, maria.status_note) == ("leave", "Föräldraledig, åter i augusti")  # "föräldraledig"
    assert maria.status_until == datetime(2026, 8, 17, tzinfo=STOCKHOLM)


def test_windows_1252_comma_file_with_english_headers(directory) -> None:
    result = directory.import_csv(FILES / "windows1252_comma.csv")
    assert (result.encoding, result.delimiter, result.entries) == ("Windows-1252", ",", 2)
    goran, arla = directory.get("2001"), directory.get("2002")
    assert (goran.name, goran.unit, goran.phone) == ("Göran Ödmark", "Gata och park", "+46303373000")
    assert goran.topics == ("snöröjning", "gatubelysning") and goran.status == "leave"
    assert arla.name == "Ärla Håkansson" and arla.languages == ("sv", "de")
    assert arla.hours == "mån-tors 7-16, fre 7-12"


@pytest.mark.parametrize(("encoding", "delimiter", "detected"), [
    ("utf-8", ",", ("UTF-8", ",")),
    ("utf-8-sig", "\t", ("UTF-8 with BOM", "\t")),
    ("cp1252", ";", ("Windows-1252", ";")),
    ("utf-16", "\t", ("UTF-16", "\t")),  # Excel's "Unicode text"
])
def test_any_encoding_and_delimiter_gives_the_same_entries(tmp_path, imported, encoding, delimiter,
                                                           detected) -> None:
    path = rewrite(GOOD, tmp_path / "other.csv", encoding=encoding, delimiter=delimiter)
    result = imported.import_csv(path)
    assert (result.encoding, result.delimiter) == detected
    assert (result.added, result.updated, result.unchanged, result.removed) == (0, 0, 10, 0)


EXPECTED_PROBLEMS = [  # bad_rows.csv: (line, column as in the file, part of the message)
    (3, "namn", "missing: every entry needs a name"),
    (4, "telefon", '"12345" is not a valid phone number'),
    (4, "e-post", '"per.persson@" is not an email address'),
    (5, "språk", '"xx" is not a language code'),
    (5, "status", 'unknown status "på lunch"'),
    (6, "anknytning", '"12a": an extension is 1 to 8 digits'),
    (6, "status_till", '"imorgon" is not a date'),
    (7, "asterisk", '"3128" is not an Asterisk dial string'),
    (8, "", "11 cells but the header has 10 columns"),
    (9, "id", 'id "person-asa-oberg-bygglovsenheten" is also on line 2'),
]


def test_bad_file_reports_every_problem_by_line_and_column_and_imports_nothing(imported) -> None:
    before = imported.all()
    with pytest.raises(DirectoryImportError) as caught:
        imported.import_csv(FILES / "bad_rows.csv")
    problems = caught.value.problems
    assert [(p.line, p.column) for p in problems] == [(line, col) for line, col, _ in EXPECTED_PROBLEMS]
    for problem, (_, _, message) in zip(problems, EXPECTED_PROBLEMS, strict=True):
        assert message in problem.message, problem
    assert str(problems[1]) == 'line 4: telefon: "12345" is not a valid phone number (read as +4612345)'
    assert str(caught.value) == "10 problems; nothing imported"
    assert imported.all() == before  # not half-imported: the good line 2 is not there either


def test_headers_match_in_either_language_any_case_without_accents(directory, tmp_path) -> None:
    path = tmp_path / "hr.csv"
    path.write_text("Förnamn,EFTERNAMN,Befattning,Avdelning,Sprak,Amnen,E-Mail,Personnummer\n"
                    'Åsa,Öberg,Handläggare,Bygglovsenheten,"Svenska, engelska",bygglov,a@b.se,'
                    "19700101-1234\n",
                    encoding="utf-8")
    result = directory.import_csv(path)
    (entry,) = directory.all()
    assert (entry.name, entry.title, entry.unit, entry.languages) == (
        "Åsa Öberg", "Handläggare", "Bygglovsenheten", ("sv", "en"))
    assert entry.id == "person-asa-oberg-bygglovsenheten"
    assert result.ignored_columns == ("Personnummer",)


@pytest.mark.parametrize(("content", "expected"), [
    (b"namn;telfon\nAsa;033-430 01 23\n", [(1, "telfon", 'unknown column (did you mean "telefon"?)')]),
    (b"titel;enhet\nchef;Kansliet\n", [(1, "namn", "missing column: no name column")]),
    (b"namn;name\nA;B\n", [(1, "name", 'the same column as "namn"')]),
    (b"\n\n", [(0, "", "empty file")]),
    (b"namn;enhet\n;\n", [(0, "", "no entries, only a header")]),
    (b"namn\n\x81\x8d\n", [(0, "", "not UTF-8 and not Windows-1252")]),
])
def test_a_file_that_is_not_a_directory_says_why(directory, tmp_path, content, expected) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(DirectoryImportError) as caught:
        directory.import_csv(path)
    got = [(p.line, p.column, p.message) for p in caught.value.problems]
    assert [(line, col) for line, col, _ in got] == [(line, col) for line, col, _ in expected]
    assert all(want in msg for (_, _, msg), (_, _, want) in zip(got, expected, strict=True))


def test_reimport_adds_updates_removes_and_keeps_a_supervisors_status(imported, tmp_path) -> None:
    imported.set_status("1001", "meeting", "I möte till 14", datetime(2026, 3, 2, 14, 0, tzinfo=STOCKHOLM),
                        by="chef")
    manual = Entry(id="vaxeln", kind="unit", name="Växeln", unit="Växeln", phone="+46334300000")
    imported.upsert(manual, by="chef")

    def edit(rows):
        rows = [r for r in rows if r[0] != "1006"]  # Maria has left
        for r in rows:
            if r[0] == "1004":
                r[3] = "Stadsarkitekt"
        return [*rows, ["1007", "person", "Nils Nord", "", "Planenheten", "", "", "", "", "", "sv", "", "",
                        "", "", ""]]

    result = imported.import_csv(rewrite(GOOD, tmp_path / "next.csv", encoding="utf-8", delimiter=";",
                                         edit=edit))
    assert (result.added, result.updated, result.unchanged, result.removed) == (1, 1, 8, 1)
    assert result.kept_status == 1
    asa = imported.get("1001")
    assert (asa.status, asa.status_note) == ("meeting", "I möte till 14")
    assert imported.get("1004").title == "Stadsarkitekt"
    assert imported.get("1006") is None and imported.get("1007").name == "Nils Nord"
    assert imported.get("vaxeln") == manual  # a supervisor's own entry is not the HR export's to remove


def test_dry_run_reports_the_counts_and_writes_nothing(directory) -> None:
    result = directory.import_csv(GOOD, dry_run=True)
    assert (result.added, result.dry_run) == (10, True)
    assert directory.all() == []


def test_directory_tables_live_in_an_event_log_file(tmp_path) -> None:
    path = tmp_path / "fresh.db"
    with Directory(path) as d:
        d.import_csv(GOOD)
    log = EventLog.open(path, hash_key=b"directory-test-key")  # `ivr serve` after `ivr directory import`
    log.close()
    with Directory(path) as d:
        assert len(d.all()) == 10


# --------------------------------------------------------------------------- status


def test_status_ends_at_its_until_time(imported) -> None:
    until = datetime(2026, 3, 2, 14, 0, tzinfo=STOCKHOLM)
    entry = imported.set_status("1004", "meeting", "  I möte  till 14 ", until, by="chef")
    assert (entry.status, entry.status_note, entry.status_until) == ("meeting", "I möte till 14", until)
    assert entry.status_at(datetime(2026, 3, 2, 12, 59, tzinfo=UTC)) == "meeting"
    assert entry.status_at(datetime(2026, 3, 2, 13, 0, tzinfo=UTC)) == "available"


def test_set_status_refuses_an_unknown_status_or_entry(imported) -> None:
    with pytest.raises(DirectoryError, match="status: expected one of available"):
        imported.set_status("1001", "lunch", None, None)
    with pytest.raises(DirectoryError, match='no directory entry "nobody"'):
        imported.set_status("nobody", "busy", None, None)


# --------------------------------------------------------------------------- search


def test_folding_and_sound_keys() -> None:
    assert fold("Åsa Öberg") == fold("asa oberg") == fold("Aasa Oeberg") == "asa oberg"
    assert fold("Individ- och familjeomsorgen") == "individ och familjeomsorgen"
    assert sound("Osa Öbärg") == sound("Åsa Öberg") == "osa oberg"


def ids(directory: Directory, query: str) -> list[str]:
    return [h.entry.id for h in directory.search(query)]


def test_a_typo_finds_the_unit_first_then_its_people_then_a_topic_mention(imported) -> None:
    found = ids(imported, "bygglof")
    assert found[0] == "u-bygglov"
    assert set(found[1:3]) == {"1001", "1005"}  # people in Bygglovsenheten (unit name)
    assert found[3] == "1004"  # Erik Lund only mentions "bygglov i detaljplan" as a topic
    hit = imported.search("bygglof")[3]
    assert (hit.field, hit.matched) == ("topic", "bygglov i detaljplan")


@pytest.mark.parametrize("query", ["asa oberg", "Åsa Öberg", "Osa Öbärg", "ÅSA ÖBERG", "Aasa Oeberg",
                                   "asaoberg", "Åsa Öbrg"])
def test_name_with_or_without_swedish_letters_or_misspelt_finds_the_person(imported, query) -> None:
    assert ids(imported, query)[0] == "1001"


@pytest.mark.parametrize(("query", "first", "second"), [
    ("Åsa Berg", "1002", "1001"),   # not Åsa Öberg, one letter away
    ("Åsa Öberg", "1001", "1002"),
    ("Ola Öberg", "1003", "1001"),
])
def test_an_exact_name_beats_a_fuzzy_one(imported, query, first, second) -> None:
    hits = imported.search(query)
    assert [h.entry.id for h in hits[:2]] == [first, second]
    assert hits[0].score == 100.0 > hits[1].score


def test_a_unit_name_beats_a_topic_mention(imported) -> None:
    imported.upsert(Entry(id="1008", kind="person", name="Kim Ek", unit="Kansliet", topics=("miljö",)))
    found = ids(imported, "miljö")
    assert found.index("u-miljo") < found.index("1003") < found.index("1008")


def test_search_by_topic_prefix_and_extension(imported) -> None:
    assert ids(imported, "strandskyd") == ["1001"]
    assert ids(imported, "byg")[0] == "u-bygglov"  # as typed, one key at a time
    assert ids(imported, "3123") == ["1001"]
    assert imported.search("   ") == [] and imported.search("zzzzqqq") == []
    assert len(imported.search("a", limit=2)) == 2


def test_search_sees_changes_made_through_another_connection(imported) -> None:
    assert ids(imported, "Nils Nord") == []
    with Directory(imported.db_path) as other:  # e.g. `ivr directory import` while `ivr serve` runs
        other.upsert(Entry(id="1007", kind="person", name="Nils Nord", unit="Planenheten"))
    assert ids(imported, "Nils Nord") == ["1007"]
