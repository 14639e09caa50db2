"""The web side: app factory, webhook route, health, metrics and status page."""
