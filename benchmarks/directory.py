"""Directory search per keystroke: 1000 searches over 3000 entries, and the import of those entries.

The entries are generated (Swedish first names, surnames, units and topics, so names and
topics repeat as in a real municipality); the queries are names and topics with typos,
missing å/ä/ö, prefixes as typed, and sound-alike spellings. The index is built on the
first search after a change and reused until the next change.

    python benchmarks/directory.py [--entries N] [--searches N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.directory import Directory  # noqa: E402

FIRST = ["Åsa", "Anna", "Erik", "Lars", "Karin", "Björn", "Märta", "Göran", "Ingrid", "Olle", "Sofia",
         "Johan", "Maria", "Per", "Lena", "Nils", "Eva", "Ali", "Fatima", "Mikael", "Birgitta", "Ulf", "Ylva",
         "Jörgen"]
LAST = ["Öberg", "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
        "Svensson", "Gustafsson", "Pettersson", "Jönsson", "Lindqvist", "Åkesson", "Bäckström", "Sjöberg",
        "Hassan", "Lund", "Ek", "Holmgren", "Strömberg", "Nyström", "Wallin", "Håkansson"]
UNITS = ["Bygglovsenheten", "Miljöenheten", "Planenheten", "Individ- och familjeomsorgen", "Kansliet",
         "Gata och park", "Vatten och avlopp", "Förskolan Solrosen", "Grundskolan", "Äldreomsorgen",
         "Hemtjänsten", "Kultur och fritid", "Ekonomienheten", "Personalenheten", "Överförmyndaren",
         "Räddningstjänsten", "Måltidsservice", "Fastighetsenheten", "Kommunikation", "Näringsliv"]
TOPICS = ["bygglov", "strandskydd", "rivningslov", "livsmedel", "avlopp", "detaljplan", "försörjningsstöd",
          "orosanmälan", "snöröjning", "parkering", "förskoleplats", "skolskjuts", "hemtjänst", "färdtjänst",
          "bostadsanpassning", "ekonomiskt bistånd", "lönefrågor", "fakturor", "godmanskap", "eldningsförbud"]
TITLES = ["Handläggare", "Enhetschef", "Inspektör", "Socialsekreterare", "Administratör", "Samordnare"]
QUERIES = ["bygglof", "asa oberg", "Osa Öbärg", "strandskyd", "miljo", "forskoleplats", "andersson",
           "karin", "fardtjanst", "larsson lars", "socialsek", "hemtjanst", "Bäkström", "snörojning", "gata",
           "personal", "ali hasan", "skolskjutts", "orosanm", "Jörgen Sjöberg"]


def csv_text(n: int, rng: random.Random) -> str:
    lines = ["id;typ;namn;titel;enhet;telefon;anknytning;e-post;språk;ämnen;status"]
    for i, unit in enumerate(UNITS):
        lines.append(f"u{i};enhet;{unit};;{unit};033-430 {i:02d} 00;{5000 + i};;sv;{rng.choice(TOPICS)};")
    for i in range(n - len(UNITS)):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        topics = "|".join(rng.sample(TOPICS, 2))
        lines.append(f"p{i};person;{first} {last};{rng.choice(TITLES)};{rng.choice(UNITS)};"
                     f"033-43{i // 1000} {i % 1000:03d}0;{10000 + i};p{i}@kommun.example.se;sv|en;{topics};")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=3000)
    parser.add_argument("--searches", type=int, default=1000)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "directory.csv"
        path.write_text(csv_text(args.entries, rng), encoding="utf-8")
        with Directory(Path(tmp) / "ivr.db") as directory:
            t0 = time.perf_counter()
            result = directory.import_csv(path)
            imported = time.perf_counter() - t0
            t0 = time.perf_counter()
            directory.search("bygglov")
            build = time.perf_counter() - t0
            times = []
            for i in range(args.searches):
                query = QUERIES[i % len(QUERIES)]
                t0 = time.perf_counter()
                directory.search(query, limit=10)
                times.append(time.perf_counter() - t0)
    total = sum(times)
    p99 = sorted(times)[int(len(times) * 0.99) - 1]
    print(f"import    : {result.entries} entries in {imported:.3f} s ({result.encoding}, "
          f"delimiter {result.delimiter!r})")
    print(f"index     : built in {build * 1000:.0f} ms (first search after a change)")
    print(f"search    : {args.searches} searches over {args.entries} entries in {total:.3f} s: "
          f"mean {statistics.mean(times) * 1000:.2f} ms, median {statistics.median(times) * 1000:.2f} ms, "
          f"p99 {p99 * 1000:.2f} ms")
    print(f"target    : under 50 ms per keystroke -> {'met' if p99 < 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
