"""The queue engine: callers waiting in queues, agents taking them (sans-I/O).

See :mod:`queues.engine` for the engine and ``docs/queues.md`` for the rules.
"""

from queues.engine import QueueEngine
from queues.estimate import estimated_wait
from queues.model import (
    AGENT_STATES,
    CALL_LOG_KINDS,
    CALLBACK_RESULTS,
    RESOLUTIONS,
    STRATEGIES,
    WHEN_NO_AGENTS,
    Action,
    AgentConfig,
    AgentLog,
    CallLog,
    CancelOffer,
    LeaveQueue,
    Note,
    Offer,
    Position,
    QueueConfig,
    QueueError,
)

__all__ = [
    "AGENT_STATES", "CALLBACK_RESULTS", "CALL_LOG_KINDS", "RESOLUTIONS", "STRATEGIES",
    "WHEN_NO_AGENTS", "Action", "AgentConfig", "AgentLog", "CallLog", "CancelOffer",
    "LeaveQueue", "Note", "Offer", "Position", "QueueConfig", "QueueEngine", "QueueError",
    "estimated_wait",
]
