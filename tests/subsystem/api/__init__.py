"""Subsystem tests: the real `placement-manager serve` process, on PostgreSQL and on
SQLite, with the Policy Engine and SPRM stand-ins as its upstreams, driven only through
the generated public client (`placement_manager_client`). One service process per
backend per module; the stand-ins and the `resources` table are reset before each test.
"""
