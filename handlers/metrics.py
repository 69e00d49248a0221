"""``GET /metrics``: the Prometheus exposition, for administrators or configured addresses."""

from __future__ import annotations

import ipaddress

from handlers.base import BaseHandler
from services.accounts import require_admin


class MetricsHandler(BaseHandler):
    """A scraper cannot log in, so addresses in ``metrics_addresses`` read without a
    session (and without the database: the page reports it down); everyone else must be
    an administrator. The address is the connection's peer: the server is not started
    with ``xheaders``, so X-Forwarded-For and X-Real-IP change nothing."""

    def from_allowed_address(self) -> bool:
        try:
            peer = ipaddress.ip_address(self.request.remote_ip or "")
        except ValueError:
            return False
        return any(peer in network for network in self.ctx.settings.metrics_networks)

    async def prepare(self) -> None:
        if self.from_allowed_address():
            self.current_user = None
            return
        await super().prepare()
        require_admin(self.require_user())

    async def get(self) -> None:
        body, content_type = await self.ctx.metrics_page(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.finish(body)
