"""Every record type of SCHEMA.md v1 as a TypedDict: the single definition of field names.

What: one TypedDict per record ``type`` (``SessionRecord`` for ``"session"``, ...), the shared
flow id (``FlowId``; ``MaybeFlowId`` for ``weird`` and ``alert``, whose flow fields may be null
or absent), the ``Record`` union, ``RECORDS`` (type name -> the TypedDict and what the rest of
the system knows about the type: ``wire.meta.RecordMeta``) and ``RECORD_TYPES`` (name ->
TypedDict).

Why TypedDicts: records are plain dicts at runtime (cheap to build, to serialise to JSON and
msgpack, and to validate), while producers still get mypy checking of names and types. The
annotations are also the machine-readable schema: ``wire.spec`` derives the field spec table
from them, so a field is declared exactly once.

Conventions encoded here (SCHEMA.md "Conventions"):
- every field listed for a type must be present; ``X | None`` means the value may be null
  (unknown); a ``NotRequired`` field may also be absent (only the flow id of weird/alert);
- lists are never null (an empty list is ``[]``), list items are never null;
- strings decoded from packets that SCHEMA.md lists without a type are ``str | None``: the
  message carrying them may be missing or truncated;
- ``float`` fields also accept ``int`` (JSON and other msgpack writers may drop the ``.0``);
  ``int`` fields never accept ``bool``.

Adding a field or a type: add it here (a type to ``RECORDS`` too, with its metadata:
``wire.meta``), bump ``SCHEMA_MINOR``; a new field in a minor version must be ``NotRequired``
so records of older agents stay valid; a new type is documented in SCHEMA-additions.md.
"""

from typing import Final, Literal, NotRequired, TypeAlias, TypedDict

from wire.constraints import (
    U16,
    CommunityId,
    Count,
    Depth,
    Duration,
    IPAddr,
    MacAddr,
    Port,
    Proto,
    Snippet,
    Timestamp,
    VlanId,
)
from wire.meta import ContentField, RecordMeta

ConnState: TypeAlias = Literal[
    "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"
]
LoginSource: TypeAlias = Literal[
    "radius", "dhcp", "pppoe", "portal", "roster", "http", "ftp", "pop3", "imap", "smtp"
]
RadiusStatusType: TypeAlias = Literal["Start", "Stop", "Interim-Update", "Accounting-On", "Accounting-Off"]


class FlowId(TypedDict):
    """The flow id carried by every record that belongs to a connection."""

    uid: str
    proto: Proto
    src_ip: IPAddr
    src_port: Port  # ICMP: the type
    dst_ip: IPAddr
    dst_port: Port  # ICMP: the code
    vlan: VlanId | None
    inner_vlan: VlanId | None


class MaybeFlowId(TypedDict):
    """The flow id of records that may not belong to a connection: null or absent fields."""

    uid: NotRequired[str | None]
    proto: NotRequired[Proto | None]
    src_ip: NotRequired[IPAddr | None]
    src_port: NotRequired[Port | None]
    dst_ip: NotRequired[IPAddr | None]
    dst_port: NotRequired[Port | None]
    vlan: NotRequired[VlanId | None]
    inner_vlan: NotRequired[VlanId | None]


class SessionRecord(FlowId):
    """One per connection (Zeek conn.log semantics); interim snapshots carry interim=True."""

    type: Literal["session"]
    ts: Timestamp
    src_mac: MacAddr | None
    dst_mac: MacAddr | None
    service: str | None
    duration: Duration
    orig_bytes: Count
    resp_bytes: Count
    orig_pkts: Count
    resp_pkts: Count
    orig_ip_bytes: Count
    resp_ip_bytes: Count
    missed_bytes: Count
    community_id: CommunityId
    conn_state: ConnState
    history: str
    nat_ip: IPAddr | None
    nat_port: Port | None
    account: str | None
    blocked: bool
    interim: bool


class HttpFields(TypedDict):
    """What a decoder makes of one HTTP request/response pair: a `http` record without its flow id."""

    type: Literal["http"]
    ts: Timestamp
    trans_depth: Depth
    method: str | None
    host: str | None
    uri: str | None
    referrer: str | None
    version: str | None
    user_agent: str | None
    status_code: Count | None
    status_msg: str | None
    request_body_len: Count
    response_body_len: Count
    req_content_type: str | None
    resp_content_type: str | None
    username: str | None
    account: str | None


class HttpRecord(FlowId, HttpFields):
    """One per HTTP request/response pair."""


class DnsFields(TypedDict):
    """What a decoder makes of one DNS query/response pair: a `dns` record without its flow id."""

    type: Literal["dns"]
    ts: Timestamp
    trans_id: U16
    query: str | None
    qclass: U16 | None
    qtype: U16 | None
    qtype_name: str | None
    rcode: U16 | None
    rcode_name: str | None
    AA: bool
    TC: bool
    RD: bool
    RA: bool
    answers: list[str]
    ttls: list[float]
    rejected: bool


class DnsRecord(FlowId, DnsFields):
    """One per DNS query/response pair."""


class TlsFields(TypedDict):
    """What a decoder makes of one TLS connection: a `tls` record without its flow id."""

    type: Literal["tls"]
    ts: Timestamp
    server_name: str | None
    version: str | None
    next_protocol: str | None
    established: bool


class TlsRecord(FlowId, TlsFields):
    """One per TLS connection."""



# "from" is a Python keyword, so this part needs the functional syntax.
_SmtpHeaders = TypedDict("_SmtpHeaders", {"from": str | None, "to": list[str], "cc": list[str]})


class SmtpFields(_SmtpHeaders):
    """What a decoder makes of one SMTP mail transaction: an `smtp` record without its flow id."""

    type: Literal["smtp"]
    ts: Timestamp
    trans_depth: Depth
    helo: str | None
    mailfrom: str | None
    rcptto: list[str]
    subject: str | None
    user: str | None
    tls: bool


class SmtpRecord(FlowId, SmtpFields):
    """One per SMTP mail transaction."""


class MailboxFields(TypedDict):
    """What a decoder makes of one POP3/IMAP session: a `mailbox` record without its flow id."""

    type: Literal["mailbox"]
    ts: Timestamp
    protocol: Literal["pop3", "imap"]
    user: str | None
    login_ok: bool | None
    commands: list[str]
    tls: bool


class MailboxRecord(FlowId, MailboxFields):
    """One per POP3/IMAP session."""


class FtpFields(TypedDict):
    """What a decoder makes of one FTP command that got a reply: a `ftp` record without its flow id."""

    type: Literal["ftp"]
    ts: Timestamp
    user: str | None
    command: str
    arg: str | None
    reply_code: Count
    reply_msg: str | None
    file_size: Count | None


class FtpRecord(FlowId, FtpFields):
    """One per FTP command that got a reply (Zeek ftp.log semantics)."""


class SshFields(TypedDict):
    """What a decoder makes of one SSH connection: an `ssh` record without its flow id (1.3)."""

    type: Literal["ssh"]
    ts: Timestamp
    version: Count | None
    auth_success: bool | None
    auth_attempts: Count
    direction: Literal["INBOUND", "OUTBOUND"] | None
    client: str | None
    server: str | None
    cipher_alg: str | None
    mac_alg: str | None
    compression_alg: str | None
    kex_alg: str | None
    host_key_alg: str | None
    host_key_fingerprint: str | None


class SshRecord(FlowId, SshFields):
    """One per SSH connection (Zeek ssh.log semantics)."""


class DhcpRecord(TypedDict):
    """One per DHCP client transaction (Zeek dhcp.log semantics)."""

    type: Literal["dhcp"]
    ts: Timestamp
    uids: list[str]
    client_addr: IPAddr | None
    server_addr: IPAddr | None
    mac: MacAddr | None
    host_name: str | None
    domain: str | None
    requested_addr: IPAddr | None
    assigned_addr: IPAddr | None
    lease_time: float | None
    msg_types: list[str]
    # schema 1.1 (additive): Zeek's dhcp.log extras and the relay agent's option 82 (RFC 3046),
    # which name the switch port / subscriber line a lease went to
    client_fqdn: NotRequired[str | None]
    duration: NotRequired[Duration | None]
    circuit_id: NotRequired[str | None]
    agent_remote_id: NotRequired[str | None]
    subscriber_id: NotRequired[str | None]


class RadiusFields(TypedDict):
    """What a decoder makes of one RADIUS request/response exchange: a `radius` record without its flow id."""

    type: Literal["radius"]
    ts: Timestamp
    code: str
    status_type: RadiusStatusType | None
    username: str | None
    framed_addr: IPAddr | None
    calling_station_id: str | None
    called_station_id: str | None
    nas_ip: IPAddr | None
    acct_session_id: str | None
    session_time: Count | None
    input_octets: Count | None
    output_octets: Count | None
    result: Literal["success", "failed"] | None


class RadiusRecord(FlowId, RadiusFields):
    """One per RADIUS request/response exchange."""


class PppoeRecord(TypedDict):
    """One per PPPoE discovery/termination packet."""

    type: Literal["pppoe"]
    ts: Timestamp
    src_mac: MacAddr
    dst_mac: MacAddr
    code: Literal["PADI", "PADO", "PADR", "PADS", "PADT"]
    session_id: U16
    service_name: str | None
    ac_name: str | None
    username: str | None


class LoginRecord(TypedDict):
    """A user came on line (event "login") or left (event "logout"); type is "login" for both."""

    type: Literal["login"]
    ts: Timestamp
    event: Literal["login", "logout"]
    account: str | None
    ip: IPAddr | None
    mac: MacAddr | None
    calling_station: str | None
    source: LoginSource
    session_id: str | None
    duration: Duration | None


class NatRecord(TypedDict):
    """An address translation created or destroyed (gateway connection tracking)."""

    type: Literal["nat"]
    ts: Timestamp
    event: Literal["create", "destroy"]
    proto: Proto
    inside_ip: IPAddr
    inside_port: Port | None
    outside_ip: IPAddr
    outside_port: Port | None
    remote_ip: IPAddr
    remote_port: Port | None


class AlertRecord(MaybeFlowId):
    """A keyword rule matched; flow id when the content came from a connection."""

    type: Literal["alert"]
    ts: Timestamp
    rule_id: str
    ruleset_version: str
    category: str
    severity: int
    action: Literal["alert", "block"]
    blocked: bool
    field: str
    keyword: str
    encoding: str | None
    snippet: Snippet
    account: str | None
    # 1.6 the mail policy's alerts (category "mail", agent.filter.mail_policy): why, who, how many
    reason: NotRequired[str | None]  # e.g. "rate:account:messages:minute", "forged:envelope_domain"
    sender: NotRequired[str | None]  # the envelope sender, account or host the breach is counted for
    count: NotRequired[Count | None]  # messages or recipients counted in the window
    limit: NotRequired[Count | None]  # the configured limit it passed
    window_s: NotRequired[Count | None]  # the window, seconds


class PublishFields(TypedDict):
    """What a decoder makes of one request carrying content to a publishing host: a `publish`
    record without its flow id (1.6: the unit's own news, publishing or bulletin-board services)."""

    type: Literal["publish"]
    ts: Timestamp
    trans_depth: Depth
    method: str | None
    host: str | None
    uri: str | None
    content_type: str | None
    charset: str | None  # how the text was decoded: "utf-8", "gb18030", ...
    body_len: Count  # decoded body bytes
    fields: list[str]  # the text fields' names, in order (at most MAX_LIST_LEN)
    text: str | None  # "name=value" lines of the decoded text fields, cut at the wire's string bound
    text_len: Count  # characters of that text before any cut
    fields_dropped: Count  # text fields past the bounds (not in `fields`/`text`)
    account: str | None


class PublishRecord(FlowId, PublishFields):
    """One per request that published content to a declared host."""


class WeirdRecord(MaybeFlowId):
    """A decoder anomaly (Zeek weird.log semantics); flow id when known."""

    type: Literal["weird"]
    ts: Timestamp
    name: str
    detail: str | None


class AuditRecord(TypedDict):
    """System maintenance log entry."""

    type: Literal["audit"]
    ts: Timestamp
    actor: str
    action: str
    target: str | None
    detail: str | None
    result: str | None


class RegistrationRecord(TypedDict):
    """User registration information (personal data: restricted access at the collector)."""

    type: Literal["registration"]
    ts: Timestamp
    account: str
    name: str | None
    id_type: str | None
    id_number: str | None
    phone: str | None
    mac: MacAddr | None
    ip: IPAddr | None
    # 1.5 (the captive portal, agent.portal): how the guest registered, where, and until when
    method: NotRequired[str | None]  # "sms" | "desk"
    room: NotRequired[str | None]  # room or seat the front desk wrote down
    valid_until: NotRequired[Timestamp | None]  # the registration admits the guest's devices until then
    desk_user: NotRequired[str | None]  # the staff member who registered the guest at the desk


class StatsRecord(TypedDict):
    """Agent health counters, every 60 s."""

    type: Literal["stats"]
    ts: Timestamp
    interval: float
    packets: Count
    bytes: Count
    kernel_drops: Count
    flows_active: Count
    records_out: Count
    records_dropped: Count
    spool_records: Count
    spool_bytes: Count
    upload_lag_s: float | None
    ruleset_version: str | None
    keyword_engine: NotRequired[str | None]  # 1.2: "vectorscan" or "aho-corasick"; null without rules
    quarantined_records: NotRequired[Count]  # 1.4: records the collector refused for good, held in the spool


Record: TypeAlias = (
    SessionRecord
    | HttpRecord
    | DnsRecord
    | TlsRecord
    | SmtpRecord
    | MailboxRecord
    | FtpRecord
    | SshRecord
    | DhcpRecord
    | RadiusRecord
    | PppoeRecord
    | LoginRecord
    | NatRecord
    | AlertRecord
    | PublishRecord
    | WeirdRecord
    | AuditRecord
    | RegistrationRecord
    | StatsRecord
)

#: The schema's minor version (wire.version): 1.1 added dhcp's extras, 1.2 stats.keyword_engine
#: 1.3 the ssh type, 1.4 stats.quarantined_records, 1.5 registration's method, room, valid_until and
#: desk_user, 1.6 the publish type and the mail policy's alert fields (wire/SCHEMA-additions.md).
#: Bumped with every field or type added here.
SCHEMA_MINOR: Final = 6

#: Every record type, once: ``type`` value -> its TypedDict and what the other parts of the
#: system know about it (``wire.meta``). A new type is declared here and nowhere else.
RECORDS: Final[dict[str, RecordMeta]] = {
    "session": RecordMeta(
        SessionRecord, "flow", accounts=("account",), stamped=True,
        detail=("proto", "service", "conn_state", "orig_bytes", "resp_bytes")),
    "http": RecordMeta(
        HttpRecord, "app", search=("host", "uri"), accounts=("account", "username"), stamped=True,
        app_user="username",
        content=(ContentField("http.uri", "url"), ContentField("http.host", "name"),
                 ContentField("http.request_body", "body"), ContentField("http.response_body", "body")),
        detail=("method", "host", "uri", "status_code")),
    "dns": RecordMeta(
        DnsRecord, "app", search=("query",), content=(ContentField("dns.query", "name"),),
        detail=("query", "qtype_name", "answers")),
    "tls": RecordMeta(
        TlsRecord, "app", search=("server_name",), content=(ContentField("tls.server_name", "name"),),
        detail=("server_name", "version")),
    "smtp": RecordMeta(
        SmtpRecord, "app", search=("subject",), accounts=("user",), app_user="user",
        content=(ContentField("smtp.subject", "mime-header"), ContentField("smtp.body", "body")),
        detail=("mailfrom", "rcptto", "subject")),
    "mailbox": RecordMeta(
        MailboxRecord, "app", accounts=("user",), app_user="user",
        detail=("protocol", "user", "login_ok")),
    "ftp": RecordMeta(
        FtpRecord, "app", accounts=("user",), app_user="user", content=(ContentField("ftp.arg", "url"),),
        detail=("user", "command", "arg", "reply_code")),
    "ssh": RecordMeta(
        SshRecord, "app", search=("client", "server"),
        detail=("client", "server", "auth_success", "auth_attempts", "host_key_fingerprint")),
    "dhcp": RecordMeta(
        DhcpRecord, "identity", addresses=("assigned_addr", "client_addr"),
        detail=("msg_types", "mac", "assigned_addr", "host_name")),
    "radius": RecordMeta(
        RadiusRecord, "identity", addresses=("framed_addr",), accounts=("username",),
        detail=("code", "status_type", "username", "framed_addr", "calling_station_id")),
    "pppoe": RecordMeta(
        PppoeRecord, "identity", accounts=("username",), detail=("code", "username", "service_name")),
    "login": RecordMeta(
        LoginRecord, "identity", addresses=("ip",), accounts=("account",),
        detail=("event", "account", "source")),
    "nat": RecordMeta(
        NatRecord, "nat",
        endpoints=("inside_ip", "inside_port", "remote_ip", "remote_port", "outside_ip", "outside_port"),
        detail=("event", "outside_ip", "outside_port")),
    "alert": RecordMeta(
        AlertRecord, "event", search=("keyword",), accounts=("account",), stamped=True,
        detail=("blocked", "action", "category", "rule_id", "keyword", "field", "snippet")),
    "publish": RecordMeta(
        PublishRecord, "app", search=("host", "uri", "text"), accounts=("account",), stamped=True,
        content=(ContentField("publish.text", "text"),), detail=("method", "host", "uri", "fields")),
    "weird": RecordMeta(WeirdRecord, "event", detail=("name", "detail"), listed=False),
    "audit": RecordMeta(AuditRecord, "event", detail=("actor", "action", "target", "detail"), listed=False),
    "registration": RecordMeta(
        RegistrationRecord, "identity", addresses=("ip",), accounts=("account",),
        # the guest's name is not masked: a traceback must name the person (issue 19); the
        # numbers are, for operators (an admin may ask for them, audited)
        personal=("id_number", "phone"), detail=("account", "name", "method", "id_type", "room")),
    "stats": RecordMeta(
        StatsRecord, "event", detail=("packets", "kernel_drops", "records_out"), listed=False),
}

#: Record ``type`` value -> its TypedDict. ``wire.spec`` builds the field spec table from this.
RECORD_TYPES: Final[dict[str, type]] = {name: m.typeddict for name, m in RECORDS.items()}
