"""Words for the OTLP exporters' protocol-mismatch errors (an HTTP exporter at a gRPC port, or the reverse).

The exporters report a mismatch as a byte dump (``BadStatusLine('\\x00\\x00\\x18\\x04...')``) or a gRPC
frame error; :func:`explain` turns either into a sentence naming the setting to change.
"""

from __future__ import annotations

import logging

__all__ = ["MismatchWords", "explain"]

HTTP_AT_GRPC = (
    "the OTLP collector answered in HTTP/2 (it is an OTLP/gRPC receiver, usually port 4317) while "
    "OTEL_EXPORTER_OTLP_PROTOCOL is http/protobuf: set OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or point "
    "OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP port (usually 4318)"
)
GRPC_AT_HTTP = (
    "the OTLP collector answered in HTTP/1.1 (it is an OTLP/HTTP receiver, usually port 4318) while "
    "OTEL_EXPORTER_OTLP_PROTOCOL is grpc: set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or point "
    "OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/gRPC port (usually 4317)"
)


def explain(text: str) -> str | None:
    """The mismatch ``text`` (an exporter's error message) shows, in words; None when it shows none."""
    for words in (HTTP_AT_GRPC, GRPC_AT_HTTP):
        if words in text:  # reworded already (MismatchWords)
            return words
    if "BadStatusLine" in text and ("\\x00\\x00" in text or "\x00\x00" in text):
        return HTTP_AT_GRPC
    if "Failed parsing HTTP/2" in text or "http1.x server" in text:
        return GRPC_AT_HTTP
    return None


class MismatchWords(logging.Filter):
    """Rewrites an exporter's log record that shows a protocol mismatch into :func:`explain`'s sentence."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format: left as it is
            return True
        words = explain(text)
        if words is not None:
            record.msg, record.args = f"OTLP export failed: {words}", ()
        return True
