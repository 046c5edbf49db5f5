"""Subsystem tests: the service's commands and the stand-ins as processes of their own,
killed and restarted (tests/README.md); `api/` drives one `serve` process per module
through the public client."""
