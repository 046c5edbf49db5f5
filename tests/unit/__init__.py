"""Unit tests: this process only, on in-memory fakes and mocked HTTP; no database, no
service process (tests/README.md)."""
