"""Announcement slots: messages switched on and off at runtime ("driftstörning").

The board is plain state owned by the controller; the engine only asks it which
prompts a slot plays at a given moment, so a call flow never needs editing to tell
citizens about a water outage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from ivr.vocabulary import Prompt


@dataclass(frozen=True, slots=True)
class SlotState:
    slot: str
    enabled: bool = False
    until: datetime | None = None  # aware; the slot switches itself off then
    text: Mapping[str, str] = field(default_factory=dict)
    audio: Mapping[str, str] = field(default_factory=dict)

    def active(self, at: datetime) -> bool:
        return self.enabled and (self.until is None or at < self.until)

    def prompts(self) -> Mapping[str, Prompt]:
        return MappingProxyType({
            lang: Prompt(lang, text, self.audio.get(lang)) for lang, text in self.text.items()
        })


class AnnouncementBoard:
    """The live state of every slot; ``set`` is what a supervisor's switch calls."""

    def __init__(self, slots: Mapping[str, SlotState] | None = None):
        self._slots: dict[str, SlotState] = dict(slots or {})

    @classmethod
    def from_settings(cls, announcements: Mapping[str, Any]) -> AnnouncementBoard:
        return cls({
            name: SlotState(name, a.enabled, a.until, dict(a.text), dict(a.audio))
            for name, a in announcements.items()
        })

    def __contains__(self, slot: str) -> bool:
        return slot in self._slots

    def state(self, slot: str) -> SlotState:
        return self._slots[slot]

    def states(self) -> list[SlotState]:
        return list(self._slots.values())

    def set(self, slot: str, enabled: bool, until: datetime | None = None,
            text: Mapping[str, str] | None = None) -> SlotState:
        if slot not in self._slots:
            raise KeyError(f'unknown announcement slot "{slot}"')
        if until is not None and until.tzinfo is None:
            raise ValueError("until must be an aware datetime")
        current = self._slots[slot]
        new = replace(current, enabled=enabled, until=until,
                      text=dict(text) if text is not None else current.text)
        self._slots[slot] = new
        return new

    def active(self, slot: str, at: datetime) -> Mapping[str, Prompt] | None:
        """The slot's prompts if it plays at ``at``, else None."""
        state = self._slots.get(slot)
        if state is None or not state.active(at):
            return None
        return state.prompts()
