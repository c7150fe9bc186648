from trigger_celery import task


@task(id="late-task")
def late_task(payload, ctx):
    return {"late": payload}


@task(id="late-with-policy", retry={"max_attempts": 5, "min_timeout_in_ms": 10}, max_duration=600)
def late_with_policy(payload, ctx):
    if ctx.attempt.number < 5:
        raise RuntimeError(f"attempt {ctx.attempt.number}")
    return {"attempts": ctx.attempt.number}
