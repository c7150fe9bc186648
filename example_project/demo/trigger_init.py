"""Global hooks, imported by every worker before tasks run."""

from trigger_celery import logger, tasks


@tasks.on_failure
def report_failure(ctx, error):
    logger.error("run failed for good", task=ctx.task.id, error=str(error))
