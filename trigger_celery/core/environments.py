"""The environments a deployment can be (``TRIGGER_CELERY["ENVIRONMENT"]``)."""

ENVIRONMENTS = ("PRODUCTION", "STAGING", "PREVIEW", "DEVELOPMENT")
