from trigger_celery import task


@task(id="late-task")
def late_task(payload, ctx):
    return {"late": payload}


@task(id="late-with-policy", retry={"max_attempts": 5, "min_timeout_in_ms": 10}, max_duration=600)
def late_with_policy(payload, ctx):
    if ctx.attempt.number < 5:
        raise RuntimeError(f"attempt {ctx.attempt.number}")
    return {"attempts": ctx.attempt.number}


def _late_hook(name):
    def hook(ctx):
        from tests.taskapp import events

        events.record(f"late-hooks:{ctx.run.id}", name)

    return hook


@task(id="late-waiter", on_start=_late_hook("on_start"), on_resume=_late_hook("on_resume"))
def late_waiter(payload, ctx):
    from trigger_celery import wait

    wait.for_(seconds=payload["seconds"])
    return "resumed"
