"""The test project as a Channels project: HTTP through Django, WebSockets through ``URLRouter``.

Serve it with ``daphne testproject.asgi_channels:application`` (``TESTPROJECT_CHANNELS=1`` lists ``daphne`` in
``INSTALLED_APPS``, as Channels' installation guide has it, which is how django_observe knows the project uses
Channels). No change to the routing is
needed for django_observe: it observes every consumer.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
django_application = get_asgi_application()  # first: it sets Django up before the consumers are imported

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from testproject.demo import consumers  # noqa: E402

websocket_urlpatterns = [
    path("ws/echo/", consumers.EchoConsumer.as_asgi()),
    path("ws/aecho/", consumers.AsyncEchoConsumer.as_asgi()),
]

application = ProtocolTypeRouter({"http": django_application, "websocket": URLRouter(websocket_urlpatterns)})
