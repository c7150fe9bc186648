from django.contrib import admin
from django.urls import include, path

from trigger_celery.metrics.exposition import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("trigger/", include("trigger_celery.urls")),
    path("metrics", metrics_view),
]
