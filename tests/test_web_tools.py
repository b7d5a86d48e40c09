"""The desk's switchboard tools (directory search, transfer panel, messages) and the
supervisors' directory page, server side: who may open what, the hooks of the UI contract
(docs/web.md) that the scripts and the browser test rely on, and that every word the
scripts show is in ``LABELS``.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import timedelta

import pytest

from ivr.directory import KINDS, STATUSES
from ivr.messages import DELIVERY_STATES, OUTCOMES
from ivr.messages import FIELDS as MESSAGE_FIELDS
from ivr.server import make_app
from ivr.transfers import KINDS as TRANSFER_KINDS
from ivr.transfers import LEG_FAILURES
from ivr.web import api as api_module
from ivr.web import directory as directory_module
from ivr.web import messages as messages_module
from ivr.web import pages as pages_module
from ivr.web.pages import LABELS

from .test_api import SESSION_KEY, T0, session
from .test_web_pages import STATIC, Page, page


@pytest.fixture
async def client(aiohttp_client, runtime, monkeypatch):
    monkeypatch.setenv("IVR_SESSION_KEY", SESSION_KEY)
    app = make_app(runtime, setups=[functools.partial(module.setup, demo=True) for module in
                                    (api_module, pages_module, directory_module, messages_module)])
    return await aiohttp_client(app)


def labelled_controls(html: Page) -> list[str]:
    """The ids of form controls without a <label for>."""
    labelled = {a["for"] for a in html.find("label")}
    return [a["id"] for t, a in html.elements if t in ("select", "textarea")
            or (t == "input" and a.get("type") != "hidden") if a["id"] not in labelled]


async def test_the_directory_page_is_for_supervisors_only(client) -> None:
    resp = await client.get("/directory", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/directory"
    anna = await session(client, "anna")
    forbidden = await page(client, "/directory", anna, status=403)
    assert forbidden.text["error-title"].startswith("403")
    desk = await page(client, "/desk", anna)
    assert not desk.find("a", href="/directory")  # no link to a page the agent cannot open

    chef = await session(client, "chef")
    resp = await client.get("/directory", headers=chef)
    assert resp.status == 200
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    html = Page(await resp.text())
    link = html.find("a", href="/directory")
    assert link and link[0]["aria-current"] == "page"
    assert (await page(client, "/wallboard", chef)).find("a", href="/directory")  # in every header
    for ident in ("entries", "entry-filter", "entry-new", "entry-form", "entry-id", "entry-name",
                  "entry-save",
                  "status-form", "status-value", "status-note", "status-until", "status-save",
                  "import-form", "import-file", "import-check", "import-submit", "import-result",
                  "directory-error", "directory-status", "main"):
        html.by_id(ident)
    assert html.options("status-value") == list(STATUSES)
    assert html.options("entry-kind") == list(KINDS)
    assert html.by_id("directory-error")["role"] == "alert"
    assert html.by_id("import-file")["type"] == "file"
    assert not labelled_controls(html)
    assert html.find("script", src="/static/directory.js")
    assert not [a for t, a in html.elements if t == "script" and not a.get("src")
                and a.get("type") != "application/json"]  # no inline script (the CSP forbids it)


async def test_the_desk_has_the_hooks_of_the_switchboard_tools(client, runtime, clock) -> None:
    clock.advance(seconds=90)
    desk = await page(client, "/desk", await session(client, "anna"))
    search = desk.by_id("dir-search")
    assert search["role"] == "combobox" and search["aria-controls"] == "dir-results"
    assert search["aria-expanded"] == "false" and search["autocomplete"] == "off"
    assert desk.by_id("dir-results")["role"] == "listbox"
    assert desk.by_id("dir-count")["role"] == "status"
    # the transfer panel: its buttons start disabled (enabled only while talking)
    for ident in ("xfer-blind", "xfer-attended"):
        assert "disabled" in desk.by_id(ident), ident
    for ident in ("xfer-complete", "xfer-cancel"):
        desk.by_id(ident)
    assert "hidden" in desk.by_id("xfer-consult")
    assert desk.by_id("xfer-state")["aria-live"] == "polite"
    assert "Ingen koppling pågår" in desk.text["xfer-state"]
    assert desk.by_id("xfer-error")["role"] == "alert"
    assert desk.options("xfer-queue") == list(runtime.settings.queues)
    assert {a["value"] for a in desk.find("input", name="xfer-to")} == {"directory", "queue", "number"}
    # the message form: a control and an error slot for every field of the API but the call
    assert desk.by_id("msg-consent")["type"] == "checkbox"
    assert desk.by_id("msg-promised-by")["type"] == "datetime-local"
    assert desk.by_id("msg-question")["maxlength"] == "4000"
    assert desk.options("msg-category") == list(runtime.settings.messages.categories)
    for field in MESSAGE_FIELDS:
        if field != "call_id":
            slot = desk.by_id(f"msg-err-{field}")
            assert "hidden" in slot, field
    described = {a["aria-describedby"] for t, a in desk.elements if a.get("id", "").startswith("msg-")
                 and a.get("aria-describedby")}
    assert {f"msg-err-{f}" for f in MESSAGE_FIELDS if f != "call_id"} == described
    assert desk.by_id("msg-error")["role"] == "alert"
    assert desk.by_id("messages")["class"] == "plain-list messages"
    assert not labelled_controls(desk)
    config = json.loads(desk.text["desk-config"])
    assert config["messages"] == {"categories": list(runtime.settings.messages.categories),
                                  "promise_hours": runtime.settings.messages.promise_hours}
    assert config["now"] == (T0 + timedelta(seconds=90)).isoformat()  # the server's clock, not the browser's
    assert not desk.find(id="transfer-form")  # the old queue-only form is replaced by the panel


async def test_the_tools_scripts_are_served_and_import_only_what_exists(client) -> None:
    for name in ("tools.js", "directory.js", "desk.js"):
        resp = await client.get(f"/static/{name}")
        assert resp.status == 200, name
        assert "javascript" in resp.headers["Content-Type"], name
        source = await resp.text()
        for module in re.findall(r'from "\./([\w.-]+)"', source):
            assert (STATIC / module).is_file(), f"{name} imports {module}"
        for imported, module in re.findall(r'import \{([^}]+)\} from "\./([\w.-]+)"', source):
            exported = (STATIC / module).read_text(encoding="utf-8")
            for word in (w.strip() for w in imported.split(",") if w.strip()):
                assert re.search(rf"export (?:async )?(?:function|const|let) {word}\b", exported), \
                    f"{name} imports {word} from {module}, which does not export it"
        assert not re.search(r"https?://", source), name  # nothing fetched from another server
        assert "innerHTML" not in source, name  # text from the API is never parsed as HTML


def test_every_label_the_tools_scripts_show_is_in_the_table() -> None:
    used: set[tuple[str, str]] = set()
    for name in ("tools.js", "directory.js"):
        source = (STATIC / name).read_text(encoding="utf-8")
        # the last two string arguments of a call (then perhaps the values): the group and the key
        used |= set(re.findall(r'\b(?:setLabel|labelled|plain|pair)\((?:[^()]|\([^()]*\))*?'
                               r'"(\w+)", "([\w-]+)"(?:, \{[^}]*\}|, \w+)?\)', source))
        used |= {("text", key) for key in re.findall(r'\bbutton\("(\w+)"', source)}
    assert ("text", "no_messages") in used and ("text", "import_counts") in used  # the pattern finds them
    missing = [(group, key) for group, key in used if group not in LABELS or key not in LABELS[group]]
    assert not missing


def test_the_labels_cover_every_state_the_tools_show() -> None:
    assert set(LABELS["dir_status"]) == set(STATUSES)
    assert set(LABELS["dir_kind"]) == set(KINDS)
    assert set(LABELS["delivery"]) == set(DELIVERY_STATES)
    assert set(LABELS["outcome"]) == set(OUTCOMES)
    assert set(LABELS["xfer_kind"]) == set(TRANSFER_KINDS)
    # ivr.transfers' stages, and how the last one ended (ContactCenter.transfer_state)
    assert set(LABELS["xfer_state"]) == {"ringing", "consulting", "connected", "completed", "failed",
                                         "cancelled"}
    assert set(LABELS["xfer_reason"]) == {*LEG_FAILURES, "refused", "target-left", "caller-hangup"}
    # "not yet delivered" is what the agent reads while a message waits for e-mail
    assert all(LABELS["delivery"][s][0].startswith("Ej levererat") for s in ("pending", "retrying"))
