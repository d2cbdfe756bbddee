from django.urls import path

from apps.jobs import dataset_views, views

app_name = "jobs"

urlpatterns = [
    path("", views.JobListView.as_view(), name="list"),
    path("selftest/", views.selftest_run, name="selftest"),
    path("<int:pk>/", views.job_detail, name="detail"),
    path("<int:pk>/cancel/", views.job_cancel, name="cancel"),
    path("datasets/", dataset_views.DatasetListView.as_view(), name="datasets"),
    path("datasets/upload/", dataset_views.dataset_upload, name="dataset_upload"),
    path("datasets/scan/", dataset_views.datasets_scan, name="datasets_scan"),
    path("datasets/<int:pk>/", dataset_views.dataset_detail, name="dataset"),
    path("datasets/<int:pk>/validate/", dataset_views.dataset_validate, name="dataset_validate"),
    path("<int:pk>/retry/", views.job_retry, name="retry"),
    path("<int:pk>/live/", views.job_live, name="live"),
    path("new/<str:kind>/", views.job_new, name="new"),
]
