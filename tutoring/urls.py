from django.urls import path

from tutoring import apis

urlpatterns = [
    path("auth/token/", apis.TokenApi.as_view(), name="api-token"),
    path("auth/logout/", apis.TokenLogoutApi.as_view(), name="api-logout"),
    path("auth/logout-all/", apis.TokenLogoutAllApi.as_view(), name="api-logout-all"),
    path("courses/", apis.CourseListApi.as_view(), name="course-list"),
    path("courses/<id:course_id>/", apis.CourseDetailApi.as_view(), name="course-detail"),
    path("courses/<id:course_id>/consent/", apis.CourseConsentApi.as_view(), name="course-consent"),
    path(
        "courses/<id:course_id>/sessions/",
        apis.CourseSessionListApi.as_view(),
        name="course-sessions",
    ),
    path("sessions/", apis.SessionCreateApi.as_view(), name="session-create"),
    path("sessions/<id:session_id>/", apis.SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<id:session_id>/end/", apis.SessionEndApi.as_view(), name="session-end"),
]
