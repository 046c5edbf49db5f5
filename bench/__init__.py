"""The placement service's benchmark against a minimal Python floor (see README.md)."""
