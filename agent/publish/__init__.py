"""What a unit's own news, publishing and bulletin-board services receive: `publish` records.

Order 82 Art. 10: a unit offering news, publishing or bulletin-board services must be able to
record and keep what was published and when. The unit declares its hosts (``[publishing]
hosts`` in agent.toml, and the publishing services its 备案 profile names: ``config``); every
HTTP request with a body to one of them becomes a `publish` record (SCHEMA-additions 1.6):
when, the poster's address and port (the flow id), the account the identity table knows for
that address, host, path, and the decoded text fields (``extract``).

Where it runs: in the HTTP decoder (``agent.protocols.http``), which already dechunks and
decompresses bodies; the pipeline makes one ``extract.Publisher`` and installs it for the
process (``extract.install``: the inspector builds decoders from the protocol registry with
their body budget only, so the pipeline's options cannot travel with it; one pipeline runs per
process), and each HTTP decoder takes it when it is made. A request to another host costs one
Host comparison, and nothing at all when no host is declared.

Bodies: a publishing request's body is kept up to ``Publisher.max_body`` (64 KiB by default)
whatever the keyword filter keeps, and the decoder asks the inspector to exempt that prefix
and the header bytes of each request to a publishing host from the inspection depth (the
filter's body exemption; the pipeline turns it on when it has publishing hosts), so a long
post, or a post after many requests on one keep-alive connection, is still read whole; bodies
of other hosts are only counted and skipped, as without publishing.

The keyword filter: the request body is scanned as ``http.request_body`` as for any request;
the decoded text is also handed to it as ``publish.text`` (whole, UTF-8), for categories that
watch that field and not the body (``agent.filter.compiled``: a category watching both would
alert twice for the same bytes). A post with a ``block`` keyword is stopped like any request.
"""
