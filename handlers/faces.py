"""Choosing the face and seeing it first: ``/video/faces`` and ``/video/preview``."""

from __future__ import annotations

from handlers import fields
from handlers.tasks import TaskHandler


class FacesHandler(TaskHandler):
    async def post(self) -> None:
        body = self.body()
        user = self.require_user()
        faces = await self.ctx.faces.find(user, fields.text(body, "filepath", max_len=200))
        self.reply({"status": 0, "faces": faces})


class PreviewHandler(TaskHandler):
    async def post(self) -> None:
        body = self.body()
        user = await self.acting_user(body)
        result = await self.ctx.previews.make(
            user, fields.text(body, "imagepath", max_len=200),
            fields.text(body, "videopath", max_len=200),
            fields.number(body, "at_s", minimum=0.0, maximum=1e6),
            many_faces=fields.boolean(body, "many_faces"),
            keep_mouth=fields.boolean(body, "keep_mouth"),
            quality=fields.text(body, "quality", required=False, default="balanced",
                                max_len=16),
            target_face=fields.face_id(body, "target_face"),
            source_face=fields.face_id(body, "source_face"))
        self.reply({"status": 0, **result})
