"""syncclass fleet service: inventory, timetable, pre-class checks, alerts, remote actions."""

__version__ = "0.1.0"
