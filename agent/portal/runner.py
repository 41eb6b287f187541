"""The portal inside ``edgeaudit-agent run``: built from ``[portal]``, started, swept, stopped.

``PortalRunner(cfg, unit_name, state_dir, emit)``: ``start()`` installs the packet filter
(``NftAdmission``: nobody admitted), ends admissions a previous run left open (their logouts),
and listens; ``sweep_forever(stop)`` ends admissions whose time is up or whose device went idle
every ``sweep_s``; ``stop()`` logs everyone out, removes the filter and stops listening. The
records go to ``emit`` (the supervisor: to the spool, and the ``login`` records to every capture
worker's identity inbox so sessions are stamped with the guest account).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from agent.portal.config import PortalConfig
from agent.portal.nft import NftAdmission
from agent.portal.server import PortalServer
from agent.portal.service import Portal
from agent.portal.sms import HttpSms
from agent.portal.store import PortalStore

log = logging.getLogger("edgeaudit.portal")

STATE_FILE: Final = "portal.sqlite"


class PortalRunner:
    def __init__(self, cfg: PortalConfig, unit_name: str, state_dir: Path,
                 emit: Callable[[list[dict[str, Any]]], None]) -> None:
        self.cfg = cfg
        nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin") or "nft"
        self.store = PortalStore(state_dir / STATE_FILE)
        self.admission = NftAdmission(interfaces=cfg.interfaces, portal_ip=cfg.address,
                                      http_port=cfg.http_port, idle_s=cfg.idle_s, table=cfg.nft_table,
                                      nft=nft)
        self.portal = Portal(cfg, self.store, self.admission, HttpSms(cfg.sms) if cfg.sms else None, emit)
        self.server = PortalServer(self.portal, cfg, unit_name)

    def start(self) -> None:
        """Raises AdmissionError or OSError (the reason) when the portal cannot run."""
        self.portal.start()
        try:
            self.server.start()
        except OSError:
            self.portal.stop()
            raise
        log.info("portal on %s (API %s), methods %s", self.cfg.page_url, self.cfg.api_url,
                 ", ".join(self.cfg.methods))

    def sweep_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.cfg.sweep_s):
            try:
                self.portal.sweep()
            except Exception:  # the sweep must go on: a failed one is retried at the next
                log.exception("portal: sweep")

    def stop(self) -> None:
        self.server.stop()
        try:
            self.portal.stop()
        finally:
            self.store.close()

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.portal.counters)
