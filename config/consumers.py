"""A signed-in user's personal notification socket (group ``user-<id>``)."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from config.broadcast import group_join

CLOSE_NOT_FOUND = 4404


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


class NotificationsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # accept, say why, then close: a close before accept() becomes an HTTP 403 on the
            # handshake and a browser would only see 1006, not the code
            await self.accept()
            await self.send_json({"type": "closed", "code": 4401, "reason": "sign in first"})
            await self.close(code=4401)
            return
        self.group = user_group(user.pk)
        self.staying = await group_join(self.channel_layer, self.group, self.channel_name)
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # push only: a client's message is answered, never parsed (a deeply nested one would
        # raise RecursionError in json and close the socket with 1011)
        await self.send_json({"type": "error", "reason": "this socket takes no messages"})

    async def disconnect(self, code):
        if hasattr(self, "staying"):
            self.staying.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def notify(self, event):
        await self.send_json({"type": "notify", "payload": event["payload"]})


class NoRouteConsumer(AsyncJsonWebsocketConsumer):
    """Any WebSocket path no route matches (``ws/nope/``, ``ws/sessions/abc/stream/``): accept,
    say so, close with 4404, as the other refusals do (a close before accept() would reach a
    browser as 1006 without a reason)."""

    async def connect(self):
        await self.accept()
        await self.send_json(
            {"type": "closed", "code": CLOSE_NOT_FOUND, "reason": "no such socket"}
        )
        await self.close(code=CLOSE_NOT_FOUND)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        pass  # closing already
