"""The search index: folded and sound-keyed words, rapidfuzz, field weights."""

from __future__ import annotations

import bisect
import re

from rapidfuzz import fuzz, process

from ivr.directory.fields import fold, sort_key, sound
from ivr.directory.model import Entry, Hit

# --------------------------------------------------------------------------- search index

WEIGHTS = {"name": 1.0, "unit": 0.9, "title": 0.8, "topic": 0.75}
MIN_SCORE = 60.0
PREFIX_FACTOR = 0.95   # "byggl" is a prefix of "bygglovsenheten": good, but less than a whole word
INFIX_FACTOR = 0.85    # "plan" inside "detaljplan" (4+ letters, a close match only)
INFIX_MIN = 85.0
SOUND_FACTOR = 0.98    # a match by sound ("Osa" for "Åsa") ranks just below the same match by spelling
WORD_CUTOFF = 65.0


class _Index:
    """Inverted index over folded and phonetic words and phrases of every entry's searchable fields."""

    def __init__(self, entries: list[Entry]):
        self.entries = entries
        self.words: dict[str, dict[str, list[tuple[int, str, str]]]] = {"fold": {}, "sound": {}}
        self.phrases: dict[str, dict[str, list[tuple[int, str, str]]]] = {"fold": {}, "sound": {}}
        for i, e in enumerate(entries):
            fields = [("name", e.name), ("unit", e.unit), ("title", e.title),
                      *(("topic", t) for t in e.topics)]
            for name, value in fields:
                if not value:
                    continue
                for form, fn in (("fold", fold), ("sound", sound)):
                    key = fn(value)
                    self.phrases[form].setdefault(key, []).append((i, name, value))
                    for word in set(key.split()):
                        self.words[form].setdefault(word, []).append((i, name, value))
        self.sorted = {form: sorted(words) for form, words in self.words.items()}
        self.lists = {form: list(words) for form, words in self.words.items()}
        self.phrase_lists = {form: list(p) for form, p in self.phrases.items()}

    def _word_scores(self, form: str, token: str) -> dict[str, float]:
        """Vocabulary words like ``token``: whole-word similarity, prefix, or (4+ letters) inside."""
        scores: dict[str, float] = {}
        words = self.sorted[form]
        at = bisect.bisect_left(words, token)
        while at < len(words) and words[at].startswith(token):
            w = words[at]
            scores[w] = 100.0 if w == token else 100.0 * PREFIX_FACTOR
            at += 1
        if len(token) < 3:
            return scores
        for w, s, _ in process.extract(token, self.lists[form], scorer=fuzz.ratio, score_cutoff=WORD_CUTOFF,
                                       limit=None):
            scores[w] = max(scores.get(w, 0.0), s)
        for w, s, _ in process.extract(token, self.lists[form], scorer=fuzz.partial_ratio,
                                       score_cutoff=WORD_CUTOFF, limit=None):
            if len(w) <= len(token) or w in scores and scores[w] >= s * PREFIX_FACTOR:
                continue
            prefix = fuzz.ratio(token, w[:len(token)])
            if prefix >= WORD_CUTOFF:
                scores[w] = max(scores.get(w, 0.0), prefix * PREFIX_FACTOR)
            elif len(token) >= 4 and s >= INFIX_MIN:
                scores[w] = max(scores.get(w, 0.0), s * INFIX_FACTOR)
        return scores

    def search(self, query: str, limit: int) -> list[Hit]:
        best: dict[int, tuple[float, str, str]] = {}  # entry -> (score, field, text)
        forms = {"fold": fold(query), "sound": sound(query)}
        tokens = {form: q.split() for form, q in forms.items()}
        n = len(tokens["fold"])
        if n == 0:
            return self._digits(query, limit)
        totals: dict[int, float] = {}
        for t in range(n):
            per_entry: dict[int, tuple[float, str, str]] = {}
            for form in forms:
                if t >= len(tokens[form]):
                    continue
                factor = SOUND_FACTOR if form == "sound" else 1.0
                for word, s in self._word_scores(form, tokens[form][t]).items():
                    for i, name, value in self.words[form][word]:
                        score = s * WEIGHTS[name] * factor
                        if score > per_entry.get(i, (0.0,))[0]:
                            per_entry[i] = (score, name, value)
            for i, hit in per_entry.items():
                totals[i] = totals.get(i, 0.0) + hit[0]
                if hit[0] > best.get(i, (0.0,))[0]:
                    best[i] = hit
        scored = {i: (total / n, *best[i][1:]) for i, total in totals.items()}
        for form, q in forms.items():
            for phrase, s, _ in process.extract(q, self.phrase_lists[form], scorer=fuzz.ratio,
                                                score_cutoff=MIN_SCORE, limit=None):
                for i, name, value in self.phrases[form][phrase]:
                    score = s * WEIGHTS[name] * (SOUND_FACTOR if form == "sound" else 1.0)
                    if score > scored.get(i, (0.0,))[0]:
                        scored[i] = (score, name, value)
        hits = [Hit(self.entries[i], round(s, 1), value, name)
                for i, (s, name, value) in scored.items() if s >= MIN_SCORE]
        hits.sort(key=lambda h: (-h.score, h.entry.kind != "unit", sort_key(h.entry.name), h.entry.id))
        return hits[:limit] or self._digits(query, limit)

    def _digits(self, query: str, limit: int) -> list[Hit]:
        """An extension or the end of a phone number: ``"1234"`` finds extension 1234."""
        digits = re.sub(r"[\s-]", "", query)
        if not digits.isdigit() or len(digits) < 2:
            return []
        hits = [Hit(e, 100.0, e.extension, "extension") for e in self.entries if e.extension == digits]
        if len(digits) >= 4:
            hits += [Hit(e, 90.0, e.phone, "phone") for e in self.entries
                     if e.phone and e.phone.endswith(digits[-9:] if digits.startswith("0") else digits)
                     and e.extension != digits]
        return hits[:limit]


