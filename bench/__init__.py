"""The placement service's benchmark against a minimal Python floor and a FastAPI peer
(see README.md)."""
