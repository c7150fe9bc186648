"""A ``django.tasks`` task in the project package (``tests``, the package of the
settings and ROOT_URLCONF) but in no installed app: workers import it too."""

from django.tasks import task


@task
def project_add(a, b):
    return a + b
