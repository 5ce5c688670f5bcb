"""Plumbing both clinic apps share: database settings with the RDS-managed secret, AWS clients, JSON logs."""
