"""Placeholder: filled in by the web work (see the issues)."""

from __future__ import annotations

from aiohttp import web

from ivr.server import Runtime


def setup(app: web.Application, runtime: Runtime, *, demo: bool) -> None:
    """Add this part's routes to ``app``."""
