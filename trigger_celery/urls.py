"""The dashboard: ``path("trigger/", include("trigger_celery.urls"))``. Staff only."""

from django.urls import path

from trigger_celery.views import runs as run_views
from trigger_celery.views import schedules as schedule_views

app_name = "trigger_celery"

urlpatterns = [
    path("", run_views.run_list, name="run-list"),
    path("runs/<str:run_id>/", run_views.run_detail, name="run-detail"),
    path("schedules/", schedule_views.schedule_list, name="schedule-list"),
    path("schedules/new/", schedule_views.schedule_new, name="schedule-new"),
    path("schedules/<str:schedule_id>/", schedule_views.schedule_detail, name="schedule-detail"),
    path(
        "schedules/<str:schedule_id>/<str:action>/",
        schedule_views.schedule_action,
        name="schedule-action",
    ),
]
