"""The nginx in deploy/ passes the live event stream through unbuffered and keeps it open."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_nginx_passes_event_streams_through() -> None:
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    block = re.search(r"location = /api/v1/events \{(.*?)\n    \}", nginx, re.S)
    assert block, "no location for the event stream"
    body = block.group(1)
    assert "proxy_buffering off;" in body and "gzip off;" in body
    timeout = re.search(r"proxy_read_timeout (\d+)(s|m|h)?;", body)
    assert timeout and int(timeout.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[timeout.group(2)] > 15
