"""The queue engine: callers waiting for agents (sans-I/O, clock injected)."""
