"""Doctors' agendas: weekly schedules, exceptions (holidays, leave), free slots, and the reminder loop."""
