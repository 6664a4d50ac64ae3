from django.urls import path

from config.consumers import NotificationsConsumer
from emotion.consumers import CourseLiveConsumer, SessionStreamConsumer

websocket_urlpatterns = [
    path("ws/notifications/", NotificationsConsumer.as_asgi()),
    path("ws/sessions/<int:session_id>/stream/", SessionStreamConsumer.as_asgi()),
    path("ws/courses/<int:course_id>/live/", CourseLiveConsumer.as_asgi()),
]
