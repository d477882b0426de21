from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from leaderboard import closing_views, fairness_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("benchmarks/<slug:slug>/", views.benchmark_detail, name="benchmark-detail"),
    path("benchmarks/<slug:slug>/train.csv", views.benchmark_train_data, name="benchmark-train-data"),
    path("benchmarks/<slug:slug>/submit/", views.submission_new, name="submission-new"),
    path("submissions/<uuid:pk>/", views.submission_detail, name="submission-detail"),
    path("submissions/<uuid:pk>/final/", closing_views.submission_final, name="submission-final"),
    path("submissions/<uuid:pk>/body/", views.submission_body, name="submission-body"),
    path("submissions/<uuid:pk>/reports.json", views.submission_reports_json, name="submission-reports-json"),
    path("submissions/<uuid:pk>/fairness/", fairness_views.fairness_report_page, name="fairness-report"),
    path("submissions/<uuid:pk>/fairness.json", fairness_views.fairness_report_json, name="fairness-report-json"),
    path(
        "submissions/<uuid:pk>/fairness.md",
        fairness_views.fairness_report_markdown_download,
        name="fairness-report-markdown",
    ),
    path("fairness/compare/", fairness_views.fairness_compare, name="fairness-compare"),
    path("account/tokens/", views.account_tokens, name="account-tokens"),
    path("account/tokens/<int:pk>/revoke/", views.account_token_revoke, name="account-token-revoke"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
]

handler400 = "api.errors.bad_request"
handler403 = "api.errors.permission_denied"
handler404 = "leaderboard.views.page_not_found"
handler500 = "api.errors.server_error"
