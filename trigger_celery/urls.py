"""The dashboard: ``path("trigger/", include("trigger_celery.urls"))``.

Staff only; each page also needs its model permission (see ``views/access.py``).
"""

from django.urls import path

from trigger_celery.views import bulk as bulk_views
from trigger_celery.views import queues as queue_views
from trigger_celery.views import run_actions, test_page
from trigger_celery.views import runs as run_views
from trigger_celery.views import schedules as schedule_views
from trigger_celery.views import tasks as task_views

app_name = "trigger_celery"

urlpatterns = [
    path("", run_views.run_list, name="run-list"),
    path("runs.json", run_views.run_list_json, name="run-list-json"),
    path("runs/<str:run_id>/", run_views.run_detail, name="run-detail"),
    path("runs/<str:run_id>/json/", run_views.run_detail_json, name="run-detail-json"),
    path("runs/<str:run_id>/cancel/", run_actions.cancel, name="run-cancel"),
    path("runs/<str:run_id>/replay/", run_actions.replay, name="run-replay"),
    path("runs/<str:run_id>/reschedule/", run_actions.reschedule, name="run-reschedule"),
    path("bulk/", bulk_views.bulk_new, name="bulk-new"),
    path("bulk/<int:pk>/", bulk_views.bulk_detail, name="bulk-detail"),
    path("bulk/<int:pk>/json/", bulk_views.bulk_json, name="bulk-json"),
    path("tasks/", task_views.task_list, name="task-list"),
    path("test/", test_page.test_page, name="test"),
    path("queues/", queue_views.queue_list, name="queue-list"),
    # A queue's name may hold a slash ("emails/priority"); the action never does.
    path("queues/<path:name>/<str:action>/", queue_views.queue_action, name="queue-action"),
    path("schedules/", schedule_views.schedule_list, name="schedule-list"),
    path("schedules/new/", schedule_views.schedule_new, name="schedule-new"),
    path("schedules/<str:schedule_id>/", schedule_views.schedule_detail, name="schedule-detail"),
    path(
        "schedules/<str:schedule_id>/<str:action>/",
        schedule_views.schedule_action,
        name="schedule-action",
    ),
]
