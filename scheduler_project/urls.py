from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from scheduler_project import health, scrape
from scheduler_project.api.router import router

urlpatterns = [
    path("api/v1/", include(router.urls)),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", health.HealthzView.as_view(), name="healthz"),
    path("readyz", health.ReadyzView.as_view(), name="readyz"),
    # Prometheus; not an API operation, so not in the OpenAPI document. No authentication.
    path("metrics", scrape.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]

handler400 = "scheduler_project.api.exceptions.bad_request"
handler403 = "scheduler_project.api.exceptions.permission_denied"
handler404 = "scheduler_project.api.exceptions.not_found"
handler500 = "scheduler_project.api.exceptions.server_error"
