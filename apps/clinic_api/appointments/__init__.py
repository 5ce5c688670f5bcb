"""Appointments: booking, rescheduling and cancelling a doctor's free slots, video visits, and the portal's pages for
them (the API's routes are still in routes/appointments.py and routes/telemedicine.py; both call service.py and
video.py)."""
