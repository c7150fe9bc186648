"""A trigger_init module that cannot be imported: a worker must refuse to start, naming it."""

from tests.brokeninit.no_such_module import with_db  # the mistake under test
from trigger_celery import tasks

tasks.middleware("db", with_db)
