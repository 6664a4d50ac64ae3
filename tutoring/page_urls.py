from django.urls import path

from tutoring import views

urlpatterns = [
    path("", views.home, name="home"),
    path("learn/", views.learn_home, name="learn-home"),
    path("learn/courses/<id:course_id>/", views.learn_course, name="learn-course"),
    path("learn/courses/<id:course_id>/consent/", views.learn_consent, name="learn-consent"),
    path("learn/courses/<id:course_id>/revoke/", views.learn_revoke, name="learn-revoke"),
    path("learn/courses/<id:course_id>/start/", views.learn_start, name="learn-start"),
    path("learn/sessions/<id:session_id>/", views.learn_session, name="learn-session"),
    path("teach/", views.teach_home, name="teach-home"),
    path("teach/courses/<id:course_id>/live/", views.teach_live, name="teach-live"),
]
