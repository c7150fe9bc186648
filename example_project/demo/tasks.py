"""Example tasks: one of each kind trigger_celery supports so far."""

import asyncio
import random

from pydantic import BaseModel

from trigger_celery import AbortTaskRunError, logger, metadata, schedules, schema_task, task


@task(id="hello-world", description="Says hello and returns the message.")
def hello_world(payload, ctx):
    logger.info("Hello, world!", message=payload.get("message"))
    return {"message": payload.get("message", "hi"), "attempt": ctx.attempt.number}


@task(id="unreliable", retry={"max_attempts": 5, "min_timeout_in_ms": 500, "factor": 2})
def unreliable(payload, ctx):
    """Fails at random; the retry policy brings it home."""
    metadata.set("attempt_seen", ctx.attempt.number)
    if random.random() < payload.get("failure_rate", 0.5):
        raise RuntimeError(f"unlucky on attempt {ctx.attempt.number}")
    return {"lucky_on": ctx.attempt.number}


class Invoice(BaseModel):
    customer: str
    amount_cents: int
    currency: str = "EUR"


@schema_task(id="send-invoice", schema=Invoice)
def send_invoice(invoice: Invoice, ctx):
    if invoice.amount_cents <= 0:
        raise AbortTaskRunError("refusing to send an invoice for nothing")
    logger.info("invoice sent", customer=invoice.customer)
    return {
        "sent_to": invoice.customer,
        "total": f"{invoice.amount_cents / 100:.2f} {invoice.currency}",
    }


@task(id="async-fetch")
async def async_fetch(payload, ctx):
    await asyncio.sleep(0.2)
    return {"fetched": payload.get("url", "https://example.com")}


@schedules.task(id="heartbeat", cron="* * * * *", description="Every minute, from code.")
def heartbeat(payload, ctx):
    """A declared schedule: synced when the worker starts."""
    logger.info("tick", due=payload.timestamp.isoformat(), previous=str(payload.last_timestamp))
    return {"due": payload.timestamp.isoformat(), "next": payload.upcoming[0].isoformat()}


@schedules.task(
    id="daily-digest", description="Attach schedules in admin or with schedules.create."
)
def daily_digest(payload, ctx):
    """No cron in code: schedules are attached per user (external_id) at run time."""
    local = payload.local_timestamp()
    return {"user": payload.external_id, "local_time": local.strftime("%Y-%m-%d %H:%M %Z")}
