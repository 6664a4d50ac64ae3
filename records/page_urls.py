from django.urls import path

from records import views

urlpatterns = [
    path("learn/data/erase/", views.learn_erase, name="learn-erase"),
    path("teach/courses/<id:course_id>/reports/", views.teach_reports, name="teach-reports"),
    path("teach/courses/<id:course_id>/sessions/", views.teach_sessions, name="teach-sessions"),
    path("teach/sessions/<id:session_id>/", views.teach_session, name="teach-session"),
]
