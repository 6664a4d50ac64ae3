from django.urls import path, re_path

import config.converters  # noqa: F401  (registers <id:...>)
from config.consumers import NoRouteConsumer, NotificationsConsumer
from emotion.consumers import CourseLiveConsumer, SessionStreamConsumer

websocket_urlpatterns = [
    path("ws/notifications/", NotificationsConsumer.as_asgi()),
    path("ws/sessions/<id:session_id>/stream/", SessionStreamConsumer.as_asgi()),
    path("ws/courses/<id:course_id>/live/", CourseLiveConsumer.as_asgi()),
    # last: any other path gets a 4404 refusal instead of URLRouter's ValueError (an HTTP 500
    # and an ERROR traceback)
    re_path(r"", NoRouteConsumer.as_asgi()),
]
