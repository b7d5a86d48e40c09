"""The web side: JSON API for agents and supervisors, live streams, pages."""
