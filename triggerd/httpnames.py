"""What HTTP allows as a header name (RFC 9110's token): one rule for the http and respond
nodes' headers and the webhook triggers' auth and dedupe headers."""

from __future__ import annotations

import re

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HEADER_NAME_RULE = "letters, digits and !#$%&'*+.^_`|~-"


def is_header_name(text: str) -> bool:
    return HEADER_NAME.fullmatch(text) is not None
