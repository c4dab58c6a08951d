"""WebSocket consumers of the test project (Channels), served by ``testproject.asgi_channels``.

``EchoConsumer`` (sync, its handlers run in a thread) echoes text frames and logs a line for each; ``bye`` makes
it close with code 4001, ``boom`` makes it raise. ``AsyncEchoConsumer`` does the same on the event loop.
"""

import logging

from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer

logger = logging.getLogger("api.ws")


class EchoConsumer(WebsocketConsumer):
    def connect(self):
        if self.scope["query_string"].startswith(b"reject"):
            self.close()
            return
        self.accept()

    def receive(self, text_data=None, bytes_data=None):
        logger.info("echo", extra={"size": len(text_data or bytes_data or "")})
        if text_data == "boom":
            raise RuntimeError("the consumer failed")
        if text_data == "bye":
            self.close(code=4001)
            return
        self.send(text_data=text_data or "")


class AsyncEchoConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        logger.info("echo", extra={"size": len(text_data or bytes_data or "")})
        if text_data == "bye":
            await self.close(code=4001)
            return
        await self.send(text_data=text_data or "")
