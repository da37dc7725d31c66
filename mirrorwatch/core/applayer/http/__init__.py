"""HTTP/1.x: a tolerant, libhtp-like parser producing Suricata's HTTP buffers."""

from mirrorwatch.core.applayer.http.config import HttpConfig, HttpStats
from mirrorwatch.core.applayer.http.logger import eve_record
from mirrorwatch.core.applayer.http.state import HttpState
from mirrorwatch.core.applayer.http.transaction import HttpTx

__all__ = ["HttpConfig", "HttpState", "HttpStats", "HttpTx", "eve_record"]
