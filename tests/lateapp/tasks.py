from trigger_celery import task


@task(id="late-task")
def late_task(payload, ctx):
    return {"late": payload}
