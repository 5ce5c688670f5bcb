"""The clinic's API: accounts, appointments with telemedicine rooms, exam results behind presigned URLs."""
