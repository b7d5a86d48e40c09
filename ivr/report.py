"""Render a :func:`ivr.metrics.compute` result: a terminal table, CSV, JSON or one HTML file.

The HTML report is a single file a supervisor can mail: inline CSS, charts drawn here as
inline SVG (calls per hour, service level per day against the goal, the three FCR
measures per category side by side), each followed by the same figures as a table, then
the messages to case officers per unit, the agents' transfers per queue and per menu
choice (``agent_transfers``), and nothing fetched from anywhere. CSV holds the call KPIs and the transfer
figures (``xfer_*`` columns: on the total row and the ``transfers_by_queue`` and
``transfers_by_menu_choice`` rows); the message figures are in the table, JSON and HTML
forms. Labels are
Swedish with the English in a lighter face. Every figure is defined in ``docs/metrics.md``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from ivr.metrics import KPI_NAMES, MESSAGE_NAMES, NONE_KEY, SCOPES, TRANSFER_NAMES

FORMATS = ("table", "csv", "json", "html")
SHARES = frozenset({"service_level", "occupancy", "fcr_coded", "fcr_repeat", "fcr_survey",
                    "ivr_self_service"})  # fmt: skip
SECONDS = frozenset({"asa_s", "aht_s", "longest_wait_s", "callback_median_s", "callback_p90_s"})
LABELS = {  # name: (Swedish, English)
    "calls": ("Samtal", "Calls"), "offered": ("Erbjudna till kö", "Offered"),
    "answered": ("Besvarade", "Answered"), "abandoned": ("Avbrutna i kö", "Abandoned"),
    "short_abandoned": ("Korta avbrott", "Short abandons"), "overflowed": ("Överflöde", "Overflowed"),
    "closed": ("Stängd kö", "Queue closed"), "service_level": ("Servicenivå", "Service level"),
    "asa_s": ("Snittid till svar", "ASA"), "aht_s": ("Snittid hantering", "AHT"),
    "longest_wait_s": ("Längsta väntan", "Longest wait"),
    "transfers": ("Kopplade vidare", "Transfers"),
    "callbacks_requested": ("Återuppringning begärd", "Callbacks requested"),
    "callbacks_completed": ("Återuppringning klar", "Callbacks completed"),
    "occupancy": ("Beläggning", "Occupancy"), "handled": ("Hanterade", "Handled"),
    "handed_off": ("Lämnade meddelande", "Handed off (message)"),
    "fcr_coded": ("Löst enligt kodning", "FCR, agent-coded"), "uncoded": ("Okodade", "Uncoded"),
    "fcr_repeat": ("Löst, ingen återkomst", "FCR, no repeat contact"),
    "fcr_repeat_pending": ("Återkomst ej avgjord", "Repeat window open"),
    "fcr_repeat_excluded": ("Återkomst ej mätbar", "Repeat not measurable"),
    "fcr_survey": ("Löst enligt enkät", "FCR, survey"), "survey_answers": ("Enkätsvar", "Survey answers"),
    "ivr_self_service": ("Självservice i menyn", "IVR self-service"),
    "ivr_self_service_pending": ("Självservice ej avgjord", "Self-service window open"),
}  # fmt: skip
MESSAGE_LABELS = {  # name: (Swedish, English)
    "messages": ("Meddelanden", "Messages"), "voice_messages": ("Röstmeddelanden", "Voice messages"),
    "open": ("Öppna", "Open"), "closed": ("Återkopplade", "Called back"),
    "callback_median_s": ("Tid till återkoppling, median", "Time to callback, median"),
    "callback_p90_s": ("Tid till återkoppling, 90 %", "Time to callback, p90"),
    "promises_kept": ("Löften hållna", "Promises kept"),
    "promises_broken": ("Löften brutna", "Promises broken"),
    "promises_pending": ("Löften ej avgjorda", "Promises pending"),
    "delivered": ("Levererade", "Delivered"),
    "delivered_late": ("Levererade efter nytt försök", "Delivered late"),
    "undelivered": ("Ej levererade", "Not delivered"),
    "unaddressed": ("Utan e-postadress", "No e-mail address"),
}  # fmt: skip
TRANSFER_LABELS = {  # name: (Swedish, English)
    "transfers": ("Kopplade vidare", "Transfers"), "to_queue": ("till kö", "to a queue"),
    "to_directory": ("till person/enhet", "to a person or unit"),
    "to_number": ("till externt nummer", "to an outside number"),
    "attended": ("med avstämning", "attended"), "failed": ("misslyckade", "failed"),
    "misroutes": ("felkopplade", "misroutes"),
}  # fmt: skip
TRANSFER_SCOPES = {"by_queue": ("Vidarekopplingar per kö där samtalet besvarades",
                                "Transfers by the queue the call was answered in"),
                   "by_menu_choice": ("Vidarekopplingar per menyval", "Transfers by menu choice")}
CSV_TRANSFERS = tuple(f"xfer_{n}" for n in TRANSFER_NAMES)
SCOPE_LABELS = {"by_queue": ("Kö", "Queue"), "by_category": ("Kategori", "Category"),
                "by_hour": ("Timme", "Hour"), "by_day": ("Dag", "Day")}  # fmt: skip
FCR = (("fcr_coded", "#1f4e79"), ("fcr_repeat", "#8a4b08"), ("fcr_survey", "#2e6b30"))


def render(result: dict[str, Any], fmt: str, *, service_level_goal: float = 0.8) -> str:
    """The result as ``table``, ``csv``, ``json`` or ``html`` text."""
    if fmt == "json":
        return json.dumps(result, ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        return _csv(result)
    if fmt == "table":
        return _table(result)
    if fmt == "html":
        return _html(result, service_level_goal)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def value_text(name: str, value: Any) -> str:
    """A figure for people: shares in per cent, seconds with an s, '–' for no figure."""
    if value is None:
        return "–"
    if name in SHARES:
        return f"{value * 100:.1f} %"
    if name in SECONDS:
        return f"{value:.1f} s"
    return f"{value:,}".replace(",", " ")


def _scopes(result: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    yield "total", "", result
    for scope in SCOPES:
        for key, kpis in result[scope].items():
            yield scope, str(key), kpis


def _title(result: dict[str, Any]) -> str:
    p = result.get("parameters", {})
    queue = p.get("queue") or "alla köer / all queues"
    return f"Samtalsrapport / Call report {p.get('date_from', '')} – {p.get('date_to', '')}, {queue}"


def _conditions(result: dict[str, Any]) -> str:
    p = result.get("parameters", {})
    if not p:
        return ""
    abandons = ("avbrutna efter T räknas / abandons after T count" if p["abandons_in_service_level"]
                else "bara besvarade / answered only")  # fmt: skip
    return (f"Servicenivå / service level: T = {p['service_level_s']} s, {abandons}; "
            f"korta avbrott / short abandons < {p['short_abandon_s']} s; "
            f"återkomst / repeat window {p['repeat_window_days']} d; per / as of {p['as_of']}")


# --------------------------------------------------------------------------- csv and table


def _csv(result: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    transfers = result.get("agent_transfers")  # its columns whenever the result has the figures
    writer.writerow(["scope", "key", *KPI_NAMES, *(CSV_TRANSFERS if transfers else ())])
    for scope, key, kpis in _scopes(result):
        row = [scope, key, *("" if kpis[n] is None else kpis[n] for n in KPI_NAMES)]
        if transfers:
            row += [transfers["totals"][n] for n in TRANSFER_NAMES] if scope == "total" else [""] * len(
                TRANSFER_NAMES)
        writer.writerow(row)
    for scope in TRANSFER_SCOPES if transfers else ():
        for key, figures in transfers[scope].items():
            writer.writerow([f"transfers_{scope}", key, *[""] * len(KPI_NAMES),
                             *(figures[n] for n in TRANSFER_NAMES)])
    return out.getvalue()


def _transfer_rows(transfers: dict[str, Any], scope: str) -> tuple[list[str], list[list[str]]]:
    """One row per queue (or menu choice), one column per figure, then the totals."""
    key = "Kö / Queue" if scope == "by_queue" else "Menyval / Menu choice"
    headers = [key, *(f"{TRANSFER_LABELS[n][0]} / {TRANSFER_LABELS[n][1]}" for n in TRANSFER_NAMES)]
    rows = [[str(k), *(value_text(n, v[n]) for n in TRANSFER_NAMES)] for k, v in transfers[scope].items()]
    rows.append(["Totalt / Total", *(value_text(n, transfers["totals"][n]) for n in TRANSFER_NAMES)])
    return headers, rows


def _grid(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    fmt = [lambda c, w=w, i=i: c.ljust(w) if i == 0 else c.rjust(w) for i, w in enumerate(widths)]
    return ["  ".join(f(c) for f, c in zip(fmt, headers, strict=True)), line,
            *("  ".join(f(c) for f, c in zip(fmt, row, strict=True)) for row in rows)]  # fmt: skip


def _table(result: dict[str, Any]) -> str:
    lines = [_title(result), _conditions(result), ""]
    queues = list(result["by_queue"])
    headers = ["KPI", "Totalt / Total", *queues]
    rows = [[f"{LABELS[n][0]} / {LABELS[n][1]}", value_text(n, result[n]),
             *(value_text(n, result["by_queue"][q][n]) for q in queues)] for n in KPI_NAMES]
    lines += ["Per kö / By queue", *_grid(headers, rows), ""]
    sections = (
        ("by_category", ("calls", "handled", "fcr_coded", "uncoded", "fcr_repeat",
                         "fcr_repeat_pending", "fcr_survey", "survey_answers")),
        ("by_hour", ("calls", "offered", "answered", "service_level", "asa_s", "occupancy")),
        ("by_day", ("calls", "offered", "answered", "abandoned", "service_level", "asa_s",
                    "fcr_coded", "occupancy")),
    )  # fmt: skip
    for scope, names in sections:
        keyed = [(k, v) for k, v in result[scope].items() if scope != "by_hour" or v["calls"]]
        sv, en = SCOPE_LABELS[scope]
        headers = [f"{sv} / {en}", *(LABELS[n][1] for n in names)]
        rows = [[str(k), *(value_text(n, v[n]) for n in names)] for k, v in keyed]
        lines += [f"Per {sv.lower()} / By {en.lower()}", *_grid(headers, rows), ""]
    if result.get("messages"):
        headers, rows = _message_rows(result["messages"])
        lines += ["Meddelanden per enhet / Messages by unit", *_grid(headers, rows), ""]
    if _any_transfers(result):
        for scope, (sv, en) in TRANSFER_SCOPES.items():
            headers, rows = _transfer_rows(result["agent_transfers"], scope)
            lines += [f"{sv} / {en}", *_grid(headers, rows), ""]
        lines += [_misroute_note(result), ""]
    return "\n".join(lines)


def _any_transfers(result: dict[str, Any]) -> bool:
    transfers = result.get("agent_transfers")
    return bool(transfers and transfers["by_queue"])


def _misroute_note(result: dict[str, Any]) -> str:
    window = result.get("parameters", {}).get("misroute_window_s", 60)
    return (f"Felkopplad: vidare till annan kö, eller till person/enhet utan samma ämne, inom {window:g} s "
            f"från svar / misroute: on to another queue, or to a person or unit of another topic, within "
            f"{window:g} s of the answer (docs/metrics.md)")


def _message_rows(messages: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per figure; a column for all units, then one per unit."""
    units = list(messages["by_unit"])
    headers = ["Meddelanden / Messages", "Totalt / Total", *units]
    rows = [[f"{MESSAGE_LABELS[n][0]} / {MESSAGE_LABELS[n][1]}", value_text(n, messages[n]),
             *(value_text(n, messages["by_unit"][u][n]) for u in units)] for n in MESSAGE_NAMES]
    return headers, rows


# --------------------------------------------------------------------------- html

CSS = """body{font:15px/1.45 system-ui,sans-serif;color:#1a1a1a;background:#fff;margin:2rem auto;
max-width:70rem;padding:0 1rem}h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.2rem}
.en{color:#4a4a4a;font-weight:normal}table{border-collapse:collapse;margin:.6rem 0;font-size:14px}
th,td{border:1px solid #8c8c8c;padding:.25rem .5rem;text-align:right}th:first-child,
td:first-child{text-align:left}thead th{background:#e8eef4}caption{text-align:left;
font-weight:bold;padding:.3rem 0}svg{display:block;max-width:100%;height:auto}svg text{
font:12px system-ui,sans-serif;fill:#1a1a1a}.note{color:#4a4a4a}details{margin:.4rem 0 1rem}"""


def _html(result: dict[str, Any], goal: float) -> str:
    title = escape(_title(result))
    parts = [f"<!DOCTYPE html>\n<html lang=\"sv\">\n<head>\n<meta charset=\"utf-8\">\n"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
             f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
             f"<h1>{title}</h1>\n<p class=\"note\">{escape(_conditions(result))}. Alla mått "
             "definieras i docs/metrics.md / every figure is defined in docs/metrics.md.</p>"]
    queues = list(result["by_queue"])
    headers = ["Mått / Measure", "Totalt / Total", *queues]
    rows = [[_label_html(n), value_text(n, result[n]),
             *(value_text(n, result["by_queue"][q][n]) for q in queues)] for n in KPI_NAMES]
    parts.append(_html_table("Nyckeltal per kö / KPIs by queue", headers, rows, raw_first=True))
    hours = [(f"{h:02d}", kpis["calls"]) for h, kpis in result["by_hour"].items()]
    parts.append(_section("Samtal per timme", "Calls per hour", _bars(hours, "calls"),
                          ["Timme / Hour", "Samtal / Calls"], [[h, value_text("calls", c)]
                                                               for h, c in hours]))  # fmt: skip
    days = [(d, kpis["service_level"]) for d, kpis in result["by_day"].items()]
    parts.append(_section(
        "Servicenivå per dag", "Service level per day", _service_level(days, goal),
        ["Dag / Day", "Servicenivå / Service level"],
        [[d, value_text("service_level", v)] for d, v in days],
        f"Målet / goal {goal * 100:.0f} % är den streckade linjen / is the dashed line."))
    categories = [(str(c), [k[n] for n, _ in FCR]) for c, k in result["by_category"].items()
                  if c != NONE_KEY]  # fmt: skip
    parts.append(_section(
        "Tre mått på lösta ärenden per kategori", "Three FCR measures by category",
        _grouped(categories), ["Kategori / Category", *(LABELS[n][1] for n, _ in FCR)],
        [[c, *(value_text(n, v) for (n, _), v in zip(FCR, vs, strict=True))] for c, vs in categories],
        "Kodning, ingen återkomst och enkät visas sida vid sida och slås aldrig ihop / "
        "agent-coded, no repeat contact and survey are shown side by side, never merged."))
    names = ("calls", "offered", "answered", "abandoned", "service_level", "asa_s", "aht_s",
             "fcr_coded", "fcr_repeat", "fcr_survey", "occupancy")  # fmt: skip
    for scope in ("by_category", "by_day"):
        sv, en = SCOPE_LABELS[scope]
        rows = [[str(k), *(value_text(n, v[n]) for n in names)] for k, v in result[scope].items()]
        parts.append(_html_table(f"Per {sv.lower()} / By {en.lower()}",
                                 [f"{sv} / {en}", *(LABELS[n][1] for n in names)], rows))
    if result.get("messages"):
        headers, rows = _message_rows(result["messages"])
        parts.append(_html_table("Meddelanden till handläggare per enhet / Messages to case officers by unit",
                                 headers, rows))
    if _any_transfers(result):
        for scope, (sv, en) in TRANSFER_SCOPES.items():
            headers, rows = _transfer_rows(result["agent_transfers"], scope)
            parts.append(_html_table(f"{sv} / {en}", headers, rows))
        parts.append(f'<p class="note">{escape(_misroute_note(result))}.</p>')
    parts.append("</main>\n</body>\n</html>\n")
    return "\n".join(parts)


def _label_html(name: str) -> str:
    sv, en = LABELS[name]
    return f'{escape(sv)} <span class="en">/ {escape(en)}</span> <code>{name}</code>'


def _html_table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                raw_first: bool = False) -> str:  # fmt: skip
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join((f'<th scope="row">{c if raw_first else escape(c)}</th>' if i == 0
                          else f"<td>{escape(c)}</td>") for i, c in enumerate(row)) + "</tr>\n"
        for row in rows
    )  # fmt: skip
    return (f"<table>\n<caption>{escape(caption)}</caption>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}</tbody>\n</table>")  # fmt: skip


def _section(sv: str, en: str, svg: str, headers: list[str], rows: list[list[str]],
             note: str = "") -> str:  # fmt: skip
    title = f"{sv} / {en}"
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(title)}" ', 1)
    note_html = f'<p class="note">{escape(note)}</p>\n' if note else ""
    return (f'<section>\n<h2>{escape(sv)} <span class="en">/ {escape(en)}</span></h2>\n{svg}\n'
            f"{note_html}<details><summary>Tabell / Table</summary>\n"
            f"{_html_table(title, headers, rows)}\n</details>\n</section>")


# --------------------------------------------------------------------------- svg charts

W, H, LEFT, BOTTOM, TOP = 900, 300, 56, 40, 16


def _frame(top: float, fmt: Callable[[float], str]) -> list[str]:
    """Axes and four grid lines from 0 to ``top``."""
    out = []
    for i in range(5):
        y = H - BOTTOM - (H - BOTTOM - TOP) * i / 4
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - 8}" y2="{y:.1f}" stroke="#d0d0d0"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(top * i / 4)}</text>')
    out.append(f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - 8}" y2="{H - BOTTOM}" stroke="#1a1a1a"/>')
    return out


def _y(value: float, top: float) -> float:
    return H - BOTTOM - (H - BOTTOM - TOP) * (value / top if top else 0)


def _svg(body: list[str]) -> str:
    return f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}">\n' + "\n".join(body) + "\n</svg>"


def _bars(items: list[tuple[str, float]], name: str) -> str:
    top = max([v or 0 for _, v in items] + [1])
    top = _nice(top)
    body = _frame(top, lambda v: f"{v:.0f}")
    step = (W - 8 - LEFT) / max(len(items), 1)
    for i, (label, value) in enumerate(items):
        x, y = LEFT + i * step + step * 0.15, _y(value or 0, top)
        body.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
                    f'height="{H - BOTTOM - y:.1f}" fill="#1f4e79"><title>{escape(label)}: '
                    f"{escape(value_text(name, value))}</title></rect>")  # fmt: skip
        body.append(f'<text x="{x + step * 0.35:.1f}" y="{H - BOTTOM + 16}" '
                    f'text-anchor="middle">{escape(label)}</text>')  # fmt: skip
    return _svg(body)


def _service_level(days: list[tuple[str, float | None]], goal: float) -> str:
    body = _frame(1.0, lambda v: f"{v * 100:.0f} %")
    step = (W - 8 - LEFT) / max(len(days), 1)
    every = max(1, len(days) // 12)  # at most a dozen date labels
    lines: list[list[str]] = [[]]  # a day without a figure breaks the line
    for i, (day, value) in enumerate(days):
        x = LEFT + i * step + step / 2
        if i % every == 0:
            body.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                        f"{escape(day[5:])}</text>")  # fmt: skip
        if value is None:
            lines.append([])
            continue
        y = _y(value, 1.0)
        if len(days) <= 62:
            body.append(f'<rect class="bar" x="{x - step * 0.35:.1f}" y="{y:.1f}" '
                        f'width="{step * 0.7:.1f}" height="{H - BOTTOM - y:.1f}" fill="#1f4e79">'
                        f"<title>{escape(day)}: {value_text('service_level', value)}</title></rect>")
        lines[-1].append(f"{x:.1f},{y:.1f}")
    for points in lines if len(days) > 62 else ():
        if points:
            body.append(f'<polyline class="line" points="{" ".join(points)}" fill="none" '
                        'stroke="#1f4e79" stroke-width="2"/>')  # fmt: skip
    y = _y(goal, 1.0)
    body.append(f'<line class="goal" x1="{LEFT}" y1="{y:.1f}" x2="{W - 8}" y2="{y:.1f}" '
                f'stroke="#8a4b08" stroke-width="2" stroke-dasharray="8 5"/>')
    body.append(f'<text x="{W - 10}" y="{y - 6:.1f}" text-anchor="end">mål / goal '
                f"{goal * 100:.0f} %</text>")  # fmt: skip
    return _svg(body)


def _grouped(categories: list[tuple[str, list[float | None]]]) -> str:
    """Horizontal groups, one per category: the three FCR measures side by side."""
    left, bar, gap, top = 190, 11, 12, 76
    height = top + len(categories) * (len(FCR) * bar + gap) + 30
    scale = W - 60 - left
    body = []
    for j, (name, colour) in enumerate(FCR):  # the legend, above the chart
        y = 6 + j * 18
        body.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="{colour}"/>')
        body.append(f'<text x="{left + 18}" y="{y + 10}">{escape(" / ".join(LABELS[name]))}</text>')
    for i in range(5):
        x = left + scale * i / 4
        body.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{height - 24}" '
                    f'stroke="#d0d0d0"/><text x="{x:.1f}" y="{height - 8}" '
                    f'text-anchor="middle">{i * 25} %</text>')  # fmt: skip
    for i, (category, values) in enumerate(categories):
        y0 = top + i * (len(FCR) * bar + gap)
        body.append(f'<text x="{left - 8}" y="{y0 + 1.5 * bar + 4}" text-anchor="end">'
                    f"{escape(category)}</text>")  # fmt: skip
        for j, ((name, colour), value) in enumerate(zip(FCR, values, strict=True)):
            if value is not None:
                body.append(f'<rect class="bar {name}" x="{left}" y="{y0 + j * bar}" '
                            f'width="{scale * value:.1f}" height="{bar - 1}" fill="{colour}">'
                            f"<title>{escape(category)}, {LABELS[name][1]}: "
                            f"{value_text(name, value)}</title></rect>")  # fmt: skip
    body.append(f'<line x1="{left}" y1="{top - 8}" x2="{left}" y2="{height - 24}" stroke="#1a1a1a"/>')
    return (f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}">\n'
            + "\n".join(body) + "\n</svg>")


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top`` whose quarters are round too."""
    power = 1.0
    while power * 10 <= top:
        power *= 10
    return next(m * power for m in (1, 2, 4, 8, 10) if m * power >= top)
