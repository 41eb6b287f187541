"""Every registered protocol module's SPEC: consistent with the registry, the wire record types,
and the decoder it names (each declared capability present, none undeclared)."""

from __future__ import annotations

import pytest

from agent.protocols import registry
from agent.protocols.base import (
    Addressed,
    BodySkipping,
    ContentSource,
    DataChannels,
    Finishing,
    MailSteps,
    StartTls,
)
from agent.protocols.spec import CAPABILITIES, ProtocolSpec
from wire.records import RECORDS

# what each capability consists of (the members of its Protocol / base class)
MEMBERS: dict[type, tuple[str, ...]] = {
    ContentSource: ("content",),
    Finishing: ("finished",),
    StartTls: ("tls", "tls_leftover"),
    DataChannels: ("expected_data_channels",),
    BodySkipping: ("skippable", "exempt", "skip"),
    Addressed: ("flow_addresses",),
    MailSteps: ("mail_steps",),
}


# the command protocols: every command of a connection is a record
WHOLE_CONNECTION = {"smtp", "pop3", "imap", "ftp"}


def test_members_cover_every_capability() -> None:
    assert set(MEMBERS) == set(CAPABILITIES)


@pytest.mark.parametrize("service", sorted(registry.MODULES))
def test_spec_matches_its_decoder(service: str) -> None:
    spec = registry.spec_of(service)
    assert isinstance(spec, ProtocolSpec) and spec.name == service
    assert set(spec.records) <= set(RECORDS), "a spec's record types are declared in wire.records"
    if spec.decoder is None:  # followed across flows, or link layer: no per-connection decoder
        assert registry.decoder_kind(service, "udp") is None and registry.decoder_kind(service, "tcp") is None
        assert not spec.capabilities
        return
    for transport in spec.transports:
        kind = registry.decoder_kind(service, transport)
        assert kind is not None and kind.service == service
        dec = kind.factory()
        assert dec.name == service or service == "dns"  # (dns: "dns" over both transports)
        for cap, members in MEMBERS.items():
            has = all(hasattr(dec, m) for m in members)
            if cap is BodySkipping:  # the native class, or its calls (an interpreted decoder: IMAP)
                has = isinstance(dec, BodySkipping) or has
            assert has == (cap in spec.capabilities), (service, cap.__name__)
        assert kind.content == (ContentSource in spec.capabilities)
        assert kind.starttls == (StartTls in spec.capabilities)
        assert kind.data_channels == (DataChannels in spec.capabilities)
        assert kind.finishes == (Finishing in spec.capabilities)
        assert kind.skipping == (BodySkipping in spec.capabilities)
        assert kind.addressed == (Addressed in spec.capabilities)
        assert kind.mail == (MailSteps in spec.capabilities)
        assert kind.whole == spec.whole_connection
    for transport in ("tcp", "udp"):
        if transport not in spec.transports:
            assert registry.decoder_kind(service, transport) is None


def test_trackers_and_link_decoders_are_registered_like_the_others() -> None:
    trackers = registry.trackers()
    assert set(trackers) == {"dhcp"}
    links = registry.link_decoders()
    assert [d.name for d in links] == ["pppoe"]
    for obj, members in ((trackers["dhcp"], ("name", "counters", "message", "expire", "close")),
                         (links[0], ("name", "counters", "discovery", "session_control", "auth_events"))):
        assert all(hasattr(obj, m) for m in members)
    # each call makes new ones: one per pipeline
    assert registry.trackers()["dhcp"] is not trackers["dhcp"]


def test_unknown_services_have_no_decoder() -> None:
    assert registry.spec_of("gopher") is None
    assert registry.decoder_kind("gopher", "tcp") is None


def test_a_spec_refuses_an_unknown_capability() -> None:
    with pytest.raises(TypeError):
        ProtocolSpec("x", ("tcp",), object, records=(), capabilities=(int,))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ProtocolSpec("x", (), object, records=())  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # no decoder of any kind
        ProtocolSpec("x", ("udp",), None, records=())
    with pytest.raises(TypeError):  # a link decoder on a transport
        ProtocolSpec("x", ("udp",), None, records=(), link=object)  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # followed past the depth without saying when it is finished
        ProtocolSpec("x", ("tcp",), object, records=(), whole_connection=True)  # type: ignore[arg-type]


def test_command_protocols_are_followed_for_the_whole_connection() -> None:
    """Each of their transactions is a record (Zeek logs every one), so the inspection depth
    does not stop them (issue 20); everything else stops at the depth."""
    whole = {s.name for s in registry.specs() if s.whole_connection}
    assert whole == WHOLE_CONNECTION


def test_every_content_field_is_made_by_a_registered_protocol() -> None:
    """The record types with content fields (the filter's fields) have a decoder that makes them."""
    made = {r for s in registry.specs() for r in s.records}
    for name, meta in RECORDS.items():
        if meta.content:
            assert name in made, name
