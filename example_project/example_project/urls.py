from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/trigger/")),
    path("admin/", admin.site.urls),
    path("trigger/", include("trigger_celery.urls")),
]
