"""Clients for the Policy Engine and the SPRM, over generated code."""
