"""The staff directory over the JSON API (``/api/directory...``); see ``docs/directory.md``.

Agents and supervisors search and read; supervisors edit entries, set a status and import
a CSV file (the same checks as ``ivr directory import``: every problem by line and column,
nothing written unless the whole file is good). The directory lives in the event log's
SQLite file; every read and write runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web

from ivr.directory import COLUMNS, STATUSES, TRANSPORTS, Directory, DirectoryImportError, Entry, build_entry
from ivr.server import Runtime
from ivr.web.api import API, ApiError, Field, anything, parse_until, read_body, reply, same_origin, text
from ivr.web.auth import User

log = logging.getLogger(__name__)

SEARCH_LIMIT_MAX = 50
QUERY_MAX = 200

T = TypeVar("T")

# the fields of PUT /api/directory/{id}: an entry as GET returns it, less its id
ENTRY_FIELDS = {name: Field(anything) for name in (
    "kind", "name", "title", "unit", "phone", "extension", "email", "endpoints", "languages", "topics",
    "hours", "status", "status_note", "status_until")}
ENTRY_FIELDS["name"] = Field(anything, required=True)
STATUS_FIELDS = {
    "status": Field(text(20, choices=STATUSES), required=True),
    "note": Field(text(200, nullable=True)),
    "until": Field(anything),
}


class DirectoryApi:
    def __init__(self, runtime: Runtime, db_path: Any):
        self.runtime = runtime
        self.db_path = db_path
        self.directory: Directory | None = None

    async def open(self, _app: web.Application) -> None:
        self.directory = await asyncio.to_thread(Directory, self.db_path, now=self.runtime.now)

    async def close(self, _app: web.Application) -> None:
        if self.directory is not None:
            await asyncio.to_thread(self.directory.close)
            self.directory = None

    async def run(self, work: Callable[[Directory], T]) -> T:
        """``work(directory)`` in a worker thread."""
        if self.directory is None:
            raise ApiError(503, "the directory is not open")
        return await asyncio.to_thread(work, self.directory)

    def entry_json(self, entry: Entry) -> dict[str, Any]:
        return {**entry.as_json(), "status_now": entry.status_at(self.runtime.now())}

    # ------------------------------------------------------------------ reading (agents)

    async def search(self, request: web.Request, user: User) -> web.Response:
        """``?q=TEXT`` best first (``&limit=N``, 1-50, default 10); without ``q`` every entry."""
        q = request.query.get("q", "").strip()
        if len(q) > QUERY_MAX:
            raise ApiError(400, f"q: at most {QUERY_MAX} characters, got {len(q)}")
        raw_limit = request.query.get("limit", "10")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= SEARCH_LIMIT_MAX:
            raise ApiError(400, f"limit: expected a whole number from 1 to {SEARCH_LIMIT_MAX}, "
                                f'got "{raw_limit}"')
        if not q:
            entries = await self.run(lambda d: d.all())
            return reply({"query": "", "results": [self.entry_json(e) for e in entries]})
        hits = await self.run(lambda d: d.search(q, int(raw_limit)))
        return reply({"query": q, "results": [
            {**self.entry_json(h.entry), "score": h.score, "matched": h.matched, "field": h.field}
            for h in hits]})

    async def one(self, request: web.Request, user: User) -> web.Response:
        return reply(self.entry_json(await self._existing(request.match_info["id"])))

    async def _existing(self, entry_id: str) -> Entry:
        entry = await self.run(lambda d: d.get(entry_id))
        if entry is None:
            raise ApiError(404, f'no directory entry "{entry_id}"')
        return entry

    # ------------------------------------------------------------------ editing (supervisors)

    async def put(self, request: web.Request, user: User) -> web.Response:
        """Replace (or create) an entry; fields left out are empty. Its status then survives imports."""
        same_origin(request)  # the API's guard checks POST; a PUT rides on the same session
        entry_id = request.match_info["id"]
        body = await read_body(request, ENTRY_FIELDS)
        endpoints = body.pop("endpoints", None) or {}
        if not isinstance(endpoints, dict) or set(endpoints) - set(TRANSPORTS):
            raise ApiError(400, f"endpoints: expected an object with keys from {', '.join(TRANSPORTS)}, "
                                f"got {endpoints!r}")
        entry, problems = build_entry({**body, **endpoints}, entry_id=entry_id)
        if entry is None:
            fields = {key: ("endpoints." + key if key in TRANSPORTS else key) for key in COLUMNS}
            return reply({"error": "; ".join(f"{fields.get(k, k)}: {m}" for k, m in problems),
                          "problems": [{"field": fields.get(k, k), "message": m} for k, m in problems]},
                         status=400)
        existed = await self.run(lambda d: d.get(entry_id)) is not None
        await self.run(lambda d: d.upsert(entry, by=user.name))
        self.runtime.router.notify("directory", entry_id)
        return reply(self.entry_json(entry), status=200 if existed else 201)

    async def delete(self, request: web.Request, user: User) -> web.Response:
        same_origin(request)
        entry_id = request.match_info["id"]
        if not await self.run(lambda d: d.delete(entry_id)):
            raise ApiError(404, f'no directory entry "{entry_id}"')
        self.runtime.router.notify("directory", entry_id)
        return reply({"deleted": entry_id})

    async def set_status(self, request: web.Request, user: User) -> web.Response:
        """``{"status": "meeting", "note": "I möte till 14", "until": "2026-03-02T14:00"}``."""
        entry_id = request.match_info["id"]
        body = await read_body(request, STATUS_FIELDS)
        until: datetime | None = parse_until(body.get("until"), self.runtime.now())
        await self._existing(entry_id)
        entry = await self.run(lambda d: d.set_status(entry_id, body["status"], body.get("note"), until,
                                                             by=user.name))
        self.runtime.router.notify("directory", entry_id)
        return reply(self.entry_json(entry))

    async def import_csv(self, request: web.Request, user: User) -> web.Response:
        """The CSV file as the body (``?dry_run=1``: check and count only)."""
        data = await request.read()
        if not data.strip():
            raise ApiError(400, "body: expected a CSV file (a header line and one line per entry)")
        dry_run = request.query.get("dry_run", "0") not in ("0", "false", "")
        try:
            result = await self.run(lambda d: d.import_bytes(data, dry_run=dry_run))
        except DirectoryImportError as e:
            return reply({"error": str(e), "encoding": e.encoding, "delimiter": e.delimiter,
                          "problems": [p._asdict() for p in e.problems]}, status=400)
        if not dry_run:
            log.info("directory: %s imported %d entries (%d added, %d updated, %d removed)", user.name,
                     result.entries, result.added, result.updated, result.removed)
            self.runtime.router.notify("directory", None)
        return reply(result.as_json())


DIRECTORY: web.AppKey[DirectoryApi] = web.AppKey("ivr_directory")


def setup(app: web.Application, runtime: Runtime, *, demo: bool) -> None:
    """Add the directory's routes; the directory opens (in a worker thread) when the app starts."""
    db_path = getattr(runtime.sink, "db_path", None)
    if db_path is None:
        log.warning("directory: the sink is not an event log; /api/directory is off")
        return
    api = app[API]  # ivr.web.api's setup runs first: its authentication guards these routes
    directory = DirectoryApi(runtime, db_path)
    app[DIRECTORY] = directory
    add = app.router
    add.add_post("/api/directory/import", api.guard("supervisor", directory.import_csv))
    add.add_get("/api/directory", api.guard("agent", directory.search))
    add.add_get("/api/directory/{id}", api.guard("agent", directory.one))
    add.add_put("/api/directory/{id}", api.guard("supervisor", directory.put))
    add.add_delete("/api/directory/{id}", api.guard("supervisor", directory.delete))
    add.add_post("/api/directory/{id}/status", api.guard("supervisor", directory.set_status))
    app.on_startup.append(directory.open)
    app.on_cleanup.append(directory.close)
