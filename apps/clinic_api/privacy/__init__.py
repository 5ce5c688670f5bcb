"""A patient's rights under the LGPD (consents, who accessed their data, export, erasure), their profile page and the
clinic's audit log: the logic the API routes (routes/privacy.py) and the portal's pages (pages.py) share."""
