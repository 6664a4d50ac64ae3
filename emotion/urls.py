from django.urls import path

from emotion import apis

urlpatterns = [
    path("sessions/<id:session_id>/frames/", apis.FrameUploadApi.as_view(), name="session-frames"),
    path(
        "sessions/<id:session_id>/observations/",
        apis.ObservationUploadApi.as_view(),
        name="session-observations",
    ),
    path(
        "sessions/<id:session_id>/readings/",
        apis.SessionReadingsApi.as_view(),
        name="session-readings",
    ),
]
