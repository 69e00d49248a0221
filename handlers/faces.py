"""Choosing the face and seeing it first: ``/video/faces`` and ``/video/preview``."""

from __future__ import annotations

from handlers import fields
from handlers.tasks import TaskHandler, face_field
from services import ServiceError


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
        at_s = fields.number(body, "at_s")
        if at_s is None:
            raise ServiceError("missing field 'at_s'")
        result = await self.ctx.previews.make(
            user, face_field(body),
            fields.text(body, "videopath", max_len=200), at_s,
            many_faces=fields.boolean(body, "many_faces"),
            keep_mouth=fields.boolean(body, "keep_mouth"),
            quality=fields.text(body, "quality", required=False, default="balanced",
                                max_len=16),
            target_face=fields.face_id(body, "target_face"),
            source_face=fields.face_id(body, "source_face"))
        self.reply({"status": 0, **result})
