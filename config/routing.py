from django.urls import path

import config.converters  # noqa: F401  (registers <id:...>)
from config.consumers import NotificationsConsumer
from emotion.consumers import CourseLiveConsumer, SessionStreamConsumer

websocket_urlpatterns = [
    path("ws/notifications/", NotificationsConsumer.as_asgi()),
    path("ws/sessions/<id:session_id>/stream/", SessionStreamConsumer.as_asgi()),
    path("ws/courses/<id:course_id>/live/", CourseLiveConsumer.as_asgi()),
]
