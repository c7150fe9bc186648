"""Functions written with Django's own ``@task`` (Django 6+), run by the trigger_celery
backend. Installed by tests/settings.py only where django.tasks exists."""
