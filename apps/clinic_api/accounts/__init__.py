"""Accounts: registration, email verification, password reset, staff managing accounts and doctors
(service.py; the portal's pages in pages.py)."""
