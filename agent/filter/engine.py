"""The keyword filter: content pieces from the decoders in, `alert` records out (DESIGN.md step 7).

What: decoders hand over what users sent and received as `Content` pieces
(`agent.protocols.base`): whole values (URI, Host, DNS name, SNI, mail subject, FTP
argument) and message bodies piece by piece. `FilterEngine.scan` matches them against
a compiled ruleset (`agent.filter.compiled`) and returns `alert` records (SCHEMA.md;
the inspector adds the flow id, the identity table the account).

How:
- A whole value (one `final` piece: URI, Host, DNS name, SNI, subject, FTP argument) is
  scanned whole, with its decoded views; it needs no stream state. The inspector hands a
  batch's work to `prescan` first, which finds the matches of all its whole values in one
  engine call (joined with NULs, which no pattern holds): a call into the engine costs more
  than scanning a short value.
- Each (field, message) of a connection that arrives in pieces (a body) is one stream,
  fed to a `StreamScan` (`agent.filter.patterns`): the engine (Vectorscan's stream mode,
  or Aho-Corasick with a carry) finds a keyword split across pieces exactly once; bytes
  past the depth are not scanned and are counted (`beyond_depth_bytes`), and the engine's
  stream state is freed as soon as the depth is reached.
- ASCII case is ignored where a byte is an ASCII character; the letters of multi-byte GBK
  characters match exactly (`agent.filter.forms`): no haystack is case-folded here.
- When a stream ends (its `final` piece, or the connection's end) its decoded views
  are scanned too, whole: percent-decoding of a URI, form, JSON-escape, multipart and
  MIME decodings of a body (`agent.filter.normalize.body_views`, over the first
  `depth` bytes), RFC 2047 words of a subject, IDNA names. Only a body whose type can
  have views keeps its bytes for them (`_keeps_views`: forms, JSON, multipart, MIME
  transfer encodings, an untyped body that may be a form), by reference, not copied; an
  HTML page or a script is scanned as it streams and kept nowhere. The encoding an alert
  names says where the keyword was found: `utf-8`, `gbk`, `gb18030`, `url`, `url-gbk`,
  and for a view `<transform>` or `<transform>-<charset>` (`base64`, `json-gbk`...).
- A piece of a field no enabled category matches in costs a set lookup.
- Exceptions: a match lying inside an occurrence of one of its category's exception
  phrases is suppressed. In a stream a match waits until every exception that could
  cover it has been seen (the longest exception's length further on), then counts.
- Combination rules: all parts seen in one message (a stream and its views) make one
  match, at the part that completed it.
- One alert per (connection, rule, field): later occurrences are counted, not logged.
- A category's `fields` limits where its rules match.
- Snippets are cut from the piece a match ends in and the window before it (the stream's
  last bytes: the longest pattern plus `SNIPPET_CONTEXT`), so a match at the very end of a
  piece has less context after it than one in the middle.

Both engines give the same `alert` records (tests/agent/filter/test_filter_engines.py):
they report the same occurrences in the same order (`agent.filter.patterns`), and every
decision after that is this module's.

Limits: `depth` bytes scanned per stream (default the inspection depth) and kept for
its views; `MAX_FLOWS` connections with state (the oldest is dropped, counted);
`SNIPPET_CHARS` characters of decoded context per alert.
"""

from __future__ import annotations

import codecs
from typing import Final, cast

from agent.filter.compiled import ROLE_EXCEPTION, ROLE_KEYWORD, CompiledRules
from agent.filter.normalize import body_views, percent_decode, rfc2047_decode, views_possible
from agent.filter.patterns import StreamScan
from agent.protocols.base import Content, Record
from wire.records import RECORDS, AlertRecord
from wire.text import without_nul

DEFAULT_DEPTH: Final = 16384  # bytes scanned per stream: DESIGN.md's inspection depth
MAX_FLOWS: Final = 262144  # connections with filter state at once
SNIPPET_CHARS: Final = 200  # SCHEMA.md: <= 200 chars of decoded context
SNIPPET_CONTEXT: Final = 60  # bytes of context kept on each side of a match
# The content fields of each kind (wire.records.RECORDS): which views a value gets, which are
# bodies streamed in pieces
_CONTENT_KIND: Final = {c.name: c.kind for m in RECORDS.values() for c in m.content}
_BODY_FIELDS: Final = frozenset(f for f, k in _CONTENT_KIND.items() if k == "body")
_NAME_FIELDS: Final = frozenset(f for f, k in _CONTENT_KIND.items() if k == "name")
_URL_FIELDS: Final = frozenset(f for f, k in _CONTENT_KIND.items() if k == "url")
_MIME_FIELDS: Final = frozenset(f for f, k in _CONTENT_KIND.items() if k == "mime-header")
_CHARSET = {"utf-8": "utf-8", "gbk": "gbk", "gb18030": "gb18030", "url": "utf-8", "url-gbk": "gbk"}

_DECODERS: Final = {c: codecs.getincrementaldecoder(c) for c in ("gbk", "gb18030")}
_utf_8_decode: Final = codecs.utf_8_decode  # (a module constant: no attribute lookup per snippet)


def _keeps_views(field: str, ctype: str | None, cte: str | None) -> bool:
    """Whether a stream of `field` typed `ctype` (mail: encoded `cte`) keeps its bytes for
    decoded views: a body whose type can have some (`normalize.views_possible`)."""
    return field in _BODY_FIELDS and views_possible(ctype, cte)


class _Pending:
    """A match waiting for the exceptions that could still cover it, with its context."""

    __slots__ = ("start", "pid", "window", "piece", "base")

    def __init__(self, start: int, pid: int, window: bytes, piece: bytes, base: int) -> None:
        self.start = start
        self.pid = pid
        # the raw bytes around the match (its snippet): `window + piece` from stream offset
        # `base`, joined only if it makes an alert
        self.window = window
        self.piece = piece
        self.base = base


class _Msg:
    """What one message of a field has shown so far: its field and the combination parts seen."""

    __slots__ = ("field", "parts")

    def __init__(self, field: str) -> None:
        self.field = field
        self.parts: set[int] = set()  # combination parts seen in this message


class _Stream(_Msg):
    """One (field, message) of a connection that arrives in pieces."""

    __slots__ = ("scan", "kept", "pending", "exc", "ctype", "cte")

    def __init__(self, field: str, rules: CompiledRules, depth: int, keep: bool) -> None:
        super().__init__(field)
        self.scan = StreamScan(rules.patterns, depth, SNIPPET_CONTEXT)
        # the pieces scanned (as sent, by reference) for the decoded views; None: no views
        self.kept: list[bytes] | None = [] if keep else None
        self.pending: list[_Pending] = []  # matches waiting for the exception check
        self.exc: list[tuple[int, int, int]] = []  # exception occurrences: (start, end, category)
        self.ctype: str | None = None
        self.cte: str | None = None


class _Flow:
    __slots__ = ("rules", "streams", "alerted")

    def __init__(self, rules: CompiledRules) -> None:
        self.rules = rules  # a connection keeps the ruleset it started with across a swap
        self.streams: dict[tuple[str, int], _Stream] = {}
        self.alerted: set[tuple[int, str]] = set()  # (rule index, field)


COUNTERS: Final = ("pieces", "scanned_bytes", "beyond_depth_bytes", "alerts", "repeats", "suppressed",
                   "flows_dropped", "views", "unwatched_pieces", "kept_bytes")


class FilterEngine:
    """The keyword filter of one capture worker (see the module docstring).

    A connection gets state (`_Flow`) only when it has a body stream open or an alert: a
    connection whose pieces are whole values (a DNS query, a request line) costs one scan
    call for each and nothing more.
    """

    def __init__(self, rules: CompiledRules, *, depth: int = DEFAULT_DEPTH) -> None:
        if depth < 0:
            raise ValueError("filter depth must be >= 0")
        self.rules = rules  # replaced whole by a ruleset update; running connections keep theirs
        self.depth = depth
        self._flows: dict[str, _Flow] = {}
        # counters (`counters` gives them as a dict): attributes, cheaper than dict updates per piece
        self.pieces = 0
        self.scanned_bytes = 0
        self.beyond_depth_bytes = 0
        self.alerts = 0
        self.repeats = 0
        self.suppressed = 0
        self.flows_dropped = 0
        self.views = 0
        self.unwatched_pieces = 0
        self.kept_bytes = 0
        self._ids: Record | None = None  # the connection's `ids` during a `scan` or `close`

    @property
    def counters(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in COUNTERS}

    # -- the inspector's calls -----------------------------------------------------------
    def prescan(self, work: list[tuple[str, list[Content]]]) -> None:
        """Find the matches of every whole value (URI, Host, DNS name, SNI, subject, FTP
        argument) in the pieces of `work` ((connection uid, pieces) that `scan` will be given
        next, in that order) in one engine call instead of one per value; `scan` then uses
        them. Values of a connection that still runs an older ruleset are left to `scan`."""
        rules = self.rules
        depth = self.depth
        values: list[bytes] = []
        pieces: list[Content] = []
        for key, ps in work:
            fl = self._flows.get(key)
            if fl is not None and fl.rules is not rules:
                continue
            for p in ps:
                if p.final and p.data and p.field not in _BODY_FIELDS and p.field in rules.fields:
                    values.append(p.data if len(p.data) <= depth else p.data[:depth])
                    pieces.append(p)
        if not values:
            return
        for p, found in zip(pieces, rules.patterns.scan_values(values), strict=True):
            p.found = found  # read (and cleared) by `scan`

    def scan(self, key: str, pieces: list[Content], ts: float, ids: Record | None = None) -> list[Record]:
        """Match the pieces a decoder produced for connection `key` (its uid). `ids`: the fields
        every record of the connection starts with (type, ts, the flow id: the inspector's),
        copied into each alert, so an alert is built once and not stamped again."""
        self._ids = ids
        fl = self._flows.get(key)
        rules = fl.rules if fl is not None else self.rules
        fields = rules.fields
        out: list[Record] = []
        self.pieces += len(pieces)
        for p in pieces:
            field = p.field
            if field not in fields:
                self.unwatched_pieces += 1
                continue
            skey = (field, p.msg)
            st = fl.streams.get(skey) if fl is not None else None
            if st is None:
                if p.final:
                    found = p.found
                    if found is not None:
                        p.found = None
                    self._whole(key, rules, field, p.data, p.ctype, p.cte, ts, out, found)
                    if fl is None:
                        fl = self._flows.get(key)  # an alert made one
                    continue
                if fl is None:
                    fl = self._flow(key, rules)
                keep = _keeps_views(field, p.ctype, p.cte)
                st = fl.streams[skey] = _Stream(field, fl.rules, self.depth, keep)
            assert fl is not None
            if p.data:
                self._feed(fl, st, p.data, ts, out)
            if p.final:
                st.ctype = p.ctype
                st.cte = p.cte
                self._end(fl, st, ts, out)
                del fl.streams[skey]
        return out

    def close(self, key: str, ts: float, ids: Record | None = None) -> list[Record]:
        """The connection ended: streams still open end here (a body cut short by the capture);
        `ids` as for `scan`."""
        fl = self._flows.pop(key, None)
        if fl is None:
            return []
        self._ids = ids
        out: list[Record] = []
        for st in fl.streams.values():
            self._end(fl, st, ts, out)
        return out

    def _flow(self, key: str, rules: CompiledRules) -> _Flow:
        fl = self._flows.get(key)
        if fl is None:
            if len(self._flows) >= MAX_FLOWS:
                self._drop(self._flows.pop(next(iter(self._flows))))
                self.flows_dropped += 1
            fl = self._flows[key] = _Flow(rules)
        return fl

    def _drop(self, fl: _Flow) -> None:
        for st in fl.streams.values():
            st.scan.close()

    # -- whole values ------------------------------------------------------------------------
    def _whole(self, key: str, rules: CompiledRules, field: str, data: bytes, ctype: str | None,
               cte: str | None, ts: float, out: list[Record],
               found: list[tuple[int, int]] | None = None) -> None:
        """A value (or a body) that came whole: scanned in one call with its views, no stream
        state (`found`: its matches, when `prescan` found them already)."""
        n = len(data)
        if n > self.depth:
            self.beyond_depth_bytes += n - self.depth
            data = data[:self.depth]
        self.scanned_bytes += len(data)
        if not data:
            return
        msg: _Msg | None = None
        matches = found if found is not None else rules.patterns.scan(data)
        if matches:
            msg = _Msg(field)
            self._scan_whole(key, rules, msg, data, matches, "", ts, out)
        if field in _BODY_FIELDS:
            views = body_views(data, ctype, cte) if _keeps_views(field, ctype, cte) else []
        else:
            views = _value_views(field, data)
        for view, transform in views:
            self.views += 1
            matches = rules.patterns.scan(view)
            if matches:
                if msg is None:
                    msg = _Msg(field)
                self._scan_whole(key, rules, msg, view, matches, transform, ts, out)

    # -- streams ---------------------------------------------------------------------------
    def _feed(self, fl: _Flow, st: _Stream, data: bytes, ts: float, out: list[Record]) -> None:
        scan = st.scan
        before = scan.beyond
        found = scan.feed(data)
        beyond = scan.beyond - before
        scanned = len(data) - beyond
        self.beyond_depth_bytes += beyond
        self.scanned_bytes += scanned
        kept = st.kept
        if kept is not None and scanned:
            # as sent, for the views (base64 is case-sensitive); a reference, or the part in depth
            kept.append(data if scanned == len(data) else data[:scanned])
            self.kept_bytes += scanned
        if not found:
            if st.pending:
                self._resolve(fl, st, scan.scanned - fl.rules.max_exception_len, ts, out)
            return
        rules = fl.rules
        window, piece = scan.window, scan.piece
        base = scan.scanned - len(piece) - len(window)
        field = st.field
        for start, pid in found:
            role = rules.pat_role[pid]
            ci = rules.pat_cat[pid]
            if role == ROLE_EXCEPTION:
                st.exc.append((start, start + rules.pat_len[pid], ci))
            elif field not in rules.cat_fields[ci]:
                continue  # not matched in this field
            elif (role == ROLE_KEYWORD and not rules.cat_exceptions[ci]
                  and (rules.pat_ref[pid], field) in fl.alerted):
                self.repeats += 1  # alerted already, and no exception of its category can cover it
            else:
                st.pending.append(_Pending(start, pid, window, piece, base))
        if st.pending:
            self._resolve(fl, st, scan.scanned - rules.max_exception_len, ts, out)

    def _resolve(self, fl: _Flow, st: _Stream, upto: int, ts: float, out: list[Record]) -> None:
        """Decide the waiting matches that start at or before `upto` (no exception can still
        come to cover them); the others keep waiting."""
        rules = fl.rules
        keep: list[_Pending] = []
        for m in st.pending:
            start, pid = m.start, m.pid
            if start > upto:
                keep.append(m)
                continue
            end = start + rules.pat_len[pid]
            if _covered(st.exc, start, end, rules.pat_cat[pid]):
                self.suppressed += 1
                continue
            # only the bytes around the match, from the window and the piece: not all of both
            rel = start - m.base
            buf, rel = _around(m.window, m.piece, rel, rules.pat_len[pid])
            self._hit(fl, st, pid, rel, buf, "", ts, out)
        st.pending = keep
        if st.exc and not keep:
            # exception occurrences can only cover matches that end after the scanned point
            # less the longest pattern: older ones are dropped (bounded)
            horizon = st.scan.scanned - max(rules.patterns.max_len, 1)
            st.exc = [x for x in st.exc if x[1] > horizon]

    def _end(self, fl: _Flow, st: _Stream, ts: float, out: list[Record]) -> None:
        """The stream ended: its waiting matches, then its decoded views."""
        st.scan.close()
        if st.pending:
            self._resolve(fl, st, 1 << 62, ts, out)
        kept = st.kept
        if not kept:
            return
        data = kept[0] if len(kept) == 1 else b"".join(kept)
        rules = fl.rules
        for view, transform in body_views(data, st.ctype, st.cte):
            self.views += 1
            matches = rules.patterns.scan(view)
            if matches:
                self._scan_whole("", rules, st, view, matches, transform, ts, out, fl)

    def _scan_whole(self, key: str, rules: CompiledRules, msg: _Msg, view: bytes,
                    matches: list[tuple[int, int]], transform: str, ts: float, out: list[Record],
                    fl: _Flow | None = None) -> None:
        """Decide the `matches` found in a whole buffer (a value, or a view); the connection's
        state is made (`key`) or given (`fl`) only when one of them counts."""
        exc = [(s, s + rules.pat_len[p], rules.pat_cat[p]) for s, p in matches
               if rules.pat_role[p] == ROLE_EXCEPTION]
        for start, pid in matches:
            if rules.pat_role[pid] == ROLE_EXCEPTION:
                continue
            if exc and _covered(exc, start, start + rules.pat_len[pid], rules.pat_cat[pid]):
                self.suppressed += 1
                continue
            if msg.field not in rules.cat_fields[rules.pat_cat[pid]]:
                continue
            if fl is None:
                fl = self._flow(key, rules)
            self._hit(fl, msg, pid, start, view, transform, ts, out)

    # -- matches -----------------------------------------------------------------------------
    def _hit(self, fl: _Flow, st: _Msg, pid: int, start: int, buf: bytes, transform: str,
             ts: float, out: list[Record]) -> None:
        """A keyword or a combination's part, matched in a field its category watches (the
        callers, `_feed` and `_scan_whole`, leave out the others)."""
        rules = fl.rules
        if rules.pat_role[pid] == ROLE_KEYWORD:
            self._alert(fl, st, rules.pat_ref[pid], pid, start, buf, transform, ts, out)
            return
        part = rules.pat_ref[pid]  # a combination's part
        if part in st.parts:
            return
        st.parts.add(part)
        for ri in rules.part_rules[part]:
            if all(p in st.parts for p in rules.rules[ri].parts):
                self._alert(fl, st, ri, pid, start, buf, transform, ts, out)

    def _alert(self, fl: _Flow, st: _Msg, ri: int, pid: int, start: int, buf: bytes,
               transform: str, ts: float, out: list[Record]) -> None:
        key = (ri, st.field)
        if key in fl.alerted:
            self.repeats += 1
            return
        fl.alerted.add(key)
        rules = fl.rules
        rule = rules.rules[ri]
        ci = rule.category
        enc = rules.pat_enc[pid]
        if transform:
            enc = transform if enc == "utf-8" else f"{transform}-{enc}"
        self.alerts += 1
        ids = self._ids
        # the flow id the caller gave; then the alert's fields set one by one (each checked
        # against wire's AlertRecord): half the work of building a dict and merging it into a
        # copy (an alert per match, at worst)
        rec = cast(AlertRecord, {} if ids is None else ids.copy())
        rec["type"] = "alert"
        rec["ts"] = ts
        rec["rule_id"] = rule.rule_id
        rec["ruleset_version"] = rules.version_text
        rec["category"] = rules.cat_ids[ci]
        rec["severity"] = rules.cat_severity[ci]
        rec["action"] = rules.cat_action[ci]
        rec["blocked"] = False
        rec["field"] = st.field
        rec["keyword"] = rule.text
        rec["encoding"] = enc
        rec["snippet"] = _snippet(buf, start, rules.pat_len[pid], rules.pat_enc[pid])
        rec["account"] = None
        out.append(cast(Record, rec))


def _value_views(field: str, data: bytes) -> list[tuple[bytes, str]]:
    """Decoded views of a whole value: percent-decoding, RFC 2047 words, IDNA names."""
    views: list[tuple[bytes, str]] = []
    if field in _URL_FIELDS:
        v = percent_decode(data, plus=True)  # (the value itself when it holds no "%" or "+")
        if v != data:
            views.append((v, "url"))
    elif field in _MIME_FIELDS:
        v = rfc2047_decode(data)
        if v != data:
            views.append((v, "rfc2047"))
    if field in _NAME_FIELDS and data.find(b"xn--") >= 0:  # (find: no exception inside, as "in" has)
        v = _idna(data)
        if v != data:
            views.append((v, "idna"))
    return views


def _covered(exc: list[tuple[int, int, int]], start: int, end: int, cat: int) -> bool:
    return any(xc == cat and xs <= start and end <= xe for xs, xe, xc in exc)


def _around(window: bytes, piece: bytes, start: int, length: int) -> tuple[bytes, int]:
    """The bytes of `window + piece` a snippet of the match at `start` can use (SNIPPET_CONTEXT
    on each side), and the match's offset in them; joins at most a few hundred bytes."""
    nw = len(window)
    lo = max(0, start - SNIPPET_CONTEXT)
    hi = min(nw + len(piece), start + length + SNIPPET_CONTEXT)
    if lo >= nw:
        return piece[lo - nw:hi - nw], start - lo
    if hi <= nw:
        return window[lo:hi], start - lo
    return window[lo:] + piece[:hi - nw], start - lo


def _snippet(buf: bytes, start: int, length: int, encoding: str) -> str:
    """Decoded context around a match, in the match's charset, on one line, <= SNIPPET_CHARS."""
    lo = max(0, start - SNIPPET_CONTEXT)
    hi = min(len(buf), start + length + SNIPPET_CONTEXT)
    raw = buf[lo:hi]
    if encoding.startswith("url"):
        raw = percent_decode(raw, plus=True)
    charset = _CHARSET.get(encoding, "utf-8")
    # an incremental decoder drops a multi-byte character cut at the window's start or end
    if charset == "utf-8":  # the usual case, without building a decoder object
        text = _utf_8_decode(raw, "replace", False)[0]
    else:
        text = _DECODERS[charset]("replace").decode(raw, final=False)
    # whitespace runs become one space: a text whose only whitespace is single ASCII spaces
    # (every other whitespace character is unprintable) needs only its ends stripped, without
    # splitting it into words (compiled, measured: 3,200 instructions a CJK snippet, where
    # splitting and joining it costs 5,600)
    if text.isprintable() and text.find("  ") < 0:
        text = text.strip()
    else:  # (only here can a NUL be, an unprintable character: the wire writes it \x00)
        text = without_nul(" ".join(text.split()))
    if len(text) > SNIPPET_CHARS:
        text = text[:SNIPPET_CHARS]
    return text


def _idna(name: bytes) -> bytes:
    """Labels in IDNA's ASCII form (`xn--...`, RFC 3492 punycode) as UTF-8: a Chinese domain
    name is sent that way in DNS, SNI and Host."""
    labels = []
    for label in name.split(b"."):
        if label.startswith(b"xn--"):
            try:
                labels.append(label[4:].decode("ascii").encode("ascii").decode("punycode").encode("utf-8"))
                continue
            except (UnicodeError, ValueError):
                pass
        labels.append(label)
    return b".".join(labels)
