"""The captive portal: real-name registration of a public venue's guests (issue 19).

See ``agent.portal.service`` for the design; ``admission`` is the packet filter's side.
"""
