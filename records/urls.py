from django.urls import path

from records import apis

urlpatterns = [
    path("courses/<id:course_id>/report/", apis.CourseReportApi.as_view(), name="course-report"),
    path(
        "sessions/<id:session_id>/timeline/",
        apis.SessionTimelineApi.as_view(),
        name="session-timeline",
    ),
    path(
        "sessions/<id:session_id>/report/", apis.SessionReportApi.as_view(), name="session-report"
    ),
    path("me/export/", apis.MeExportApi.as_view(), name="me-export"),
    path("me/data/", apis.MeDataApi.as_view(), name="me-data"),
]
