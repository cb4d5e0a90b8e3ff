"""One router per resource of the people API, mounted under ``/api/v1``."""
