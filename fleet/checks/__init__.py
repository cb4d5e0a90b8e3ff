"""Pre-class checks: scheduling run-check before every lesson and each lesson's readiness."""
