"""Integration tests: real PostgreSQL and SQLite, the app and the stand-ins served in this
process (tests/README.md)."""
