"""A tasks module that cannot be imported: its error must surface, naming this module."""

from tests.brokenapp.no_such_module import helper  # noqa: F401  (the mistake under test)
from trigger_celery import task


@task(id="never-registered")
def never_registered(payload, ctx):
    return None
