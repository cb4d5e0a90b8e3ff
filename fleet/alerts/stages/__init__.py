"""The stages of the notification path, in :data:`fleet.alerts.pipeline.STAGES` order."""
