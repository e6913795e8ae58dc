"""Lineage explorer: OpenLineage events stored in the platform's PostgreSQL, served through
a Marquez-compatible API with per-team visibility (see README.md)."""
