"""`GET /api/v1/agent`: who an agent token makes its bearer, asked by the uploader.

The answer is `{"agent", "unit"}`, the names the agent must put in its batches (ingest
refuses a batch naming another agent or unit than its token, `collector.ingest.batches`);
without a valid agent token, a 401 with the Bearer challenge.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from collector.access import requires_agent
from collector.auth.accounts import Agent


@requires_agent("a valid agent token is required")
async def whoami(request: web.Request, agent: Agent) -> web.Response:
    return web.json_response({"agent": agent.name, "unit": agent.unit})


AGENT_ROUTES: Final = (web.get("/api/v1/agent", whoami),)
