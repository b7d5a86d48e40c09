"""Transports: translate between a telephony platform and the core, nothing else."""
