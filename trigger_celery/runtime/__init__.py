"""What a worker does with a run: context, hooks, the executor and its Celery task."""
