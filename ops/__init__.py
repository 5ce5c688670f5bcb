"""Operator commands that are not components (ARCHITECTURE.md): the staged first deployment."""
