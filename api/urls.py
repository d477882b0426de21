from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from api import closing, views

urlpatterns = [
    path("v1/benchmarks/", views.BenchmarkListView.as_view(), name="api-benchmark-list"),
    path("v1/benchmarks/<slug:slug>/", views.BenchmarkDetailView.as_view(), name="api-benchmark-detail"),
    path(
        "v1/benchmarks/<slug:slug>/train-data/", views.BenchmarkTrainDataView.as_view(), name="api-benchmark-train-data"
    ),
    path("v1/benchmarks/<slug:slug>/submissions/", views.SubmissionCreateView.as_view(), name="api-submission-create"),
    path("v1/benchmarks/<slug:slug>/leaderboard/", views.LeaderboardView.as_view(), name="api-leaderboard"),
    path(
        "v1/benchmarks/<slug:slug>/leaderboard/private/",
        closing.PrivateLeaderboardView.as_view(),
        name="api-private-leaderboard",
    ),
    path("v1/benchmarks/<slug:slug>/close/", closing.BenchmarkCloseView.as_view(), name="api-benchmark-close"),
    path("v1/submissions/<uuid:pk>/", views.SubmissionDetailView.as_view(), name="api-submission-detail"),
    path(
        "v1/submissions/<uuid:pk>/compare/<uuid:other_id>/",
        views.SubmissionCompareView.as_view(),
        name="api-submission-compare",
    ),
    path("v1/submissions/<uuid:pk>/final/", closing.SubmissionFinalView.as_view(), name="api-submission-final"),
    path("v1/submissions/<uuid:pk>/reports/<slug:name>/", views.ReportDetailView.as_view(), name="api-report-detail"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
