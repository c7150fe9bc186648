"""The dashboard: ``path("trigger/", include("trigger_celery.urls"))``. Staff only."""

from django.urls import path

from trigger_celery.views import runs as run_views

app_name = "trigger_celery"

urlpatterns = [
    path("", run_views.run_list, name="run-list"),
    path("runs/<str:run_id>/", run_views.run_detail, name="run-detail"),
]
