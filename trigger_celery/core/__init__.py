"""The pure core: parsing and policy with no Django, Celery or Redis import."""
