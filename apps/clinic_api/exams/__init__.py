"""Exams: the rules the API's routes (clinic_api.routes.exams) and the portal's pages (pages.py) share."""
