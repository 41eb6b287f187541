"""Who may go out: the portal's admission of a client (MAC and IPv4 address) to the internet.

What: the ``Admission`` protocol is what the portal asks of the gateway's packet filter:
``setup`` the rules (unregistered clients get DNS and the portal only: their port-80 HTTP is
redirected to the portal, everything else refused), ``admit`` one client, ``revoke`` one,
``present`` the clients still admitted with the seconds each has left before its idle timeout,
``teardown`` at stop. ``agent.portal.nft.NftAdmission`` does it with nftables; ``MemoryAdmission``
keeps the same state in memory for tests of the portal's HTTP side on loopback (where no
packet is forwarded, so there is nothing to filter), with the idle clock driven by the test.

Why the idle timeout lives in the packet filter: only the kernel sees every packet of an
admitted client; nftables refreshes a set element's timeout on each forwarded packet
(``update @set``), so an element that disappears is a client idle for ``idle_s`` seconds, and
the portal turns that into a ``logout`` record when it next looks (``present``).
"""

from __future__ import annotations

from typing import Protocol

Client = tuple[str, str]  # (MAC "aa:bb:cc:dd:ee:ff", IPv4 address)


class AdmissionError(Exception):
    """The packet filter refused a change; the message says what and why."""


class Admission(Protocol):
    def setup(self) -> None:
        """Install the rules (replacing any left by an earlier run: nobody is admitted)."""

    def admit(self, client: Client) -> None:
        """Let ``client`` out until it is revoked or idle for the idle timeout."""

    def revoke(self, client: Client) -> None:
        """Stop letting ``client`` out (not admitted: nothing happens)."""

    def present(self) -> dict[Client, float]:
        """The clients admitted now, each with the seconds left before its idle timeout."""

    def teardown(self) -> None:
        """Remove the rules (at stop: the gateway no longer guards the guest network)."""


class MemoryAdmission:
    """The protocol in memory: ``advance(seconds)`` plays the idle clock (tests)."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self.left: dict[Client, float] = {}
        self.installed = False

    def setup(self) -> None:
        self.installed = True
        self.left.clear()

    def admit(self, client: Client) -> None:
        self.left[client] = self.idle_s

    def revoke(self, client: Client) -> None:
        self.left.pop(client, None)

    def present(self) -> dict[Client, float]:
        return dict(self.left)

    def teardown(self) -> None:
        self.installed = False
        self.left.clear()

    def traffic(self, client: Client) -> None:
        """A packet of ``client`` went out: its idle time starts again."""
        if client in self.left:
            self.left[client] = self.idle_s

    def advance(self, seconds: float) -> None:
        for c in list(self.left):
            self.left[c] -= seconds
            if self.left[c] <= 0:
                del self.left[c]
