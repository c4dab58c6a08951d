"""Prompt and completion text kept off spans, logs and the console when content capture is off.

An LLM call's error can carry its content: a provider's 400 answer quotes the prompt (``Error code: 400 -
{'error': {'message': "... 'Tell me about ...'"}}``), and the SDK's exception message is what the GenAI
instrumentation writes as its span's status, what every span the exception leaves records as
``exception.message`` and ``exception.stacktrace`` (the request's own span among them), and what a logged
traceback or the console's error list shows.

:class:`WithheldTexts` remembers the messages of the exceptions that left an LLM call (``llm_call`` blocks and
the openai/anthropic SDK calls, ``integrations.genai`` and ``integrations.llm_clients`` tell it), and
:meth:`WithheldTexts.scrub` replaces them wherever they appear later: the span exporter
(``tracing.redaction``) runs it on every status description, attribute and event before redaction, so the
spans that recorded the exception keep its type and frames but not its text. A message is remembered until
``max_texts`` newer ones or ``max_chars`` characters push it out (spans are exported within seconds).

Nothing here imports the rest of the package.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable

__all__ = ["CONTENT_ON_SPAN", "WITHHELD", "WithheldTexts", "captures_content"]

# OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT values that put content on the span.
CONTENT_ON_SPAN = frozenset({"true", "span_only", "span_and_event"})
WITHHELD = "[LLM content withheld]"
# The GenAI conventions' operation attribute: a span that has it is an LLM call's span.
OPERATION_NAME = "gen_ai.operation.name"


def captures_content(setting: str) -> bool:
    """True when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` lets content onto spans."""
    return setting in CONTENT_ON_SPAN


def _messages(error: BaseException) -> Iterable[str]:
    """The texts an exception is written with: ``str(error)`` and the SDKs' ``message`` and ``body``."""
    try:
        yield str(error)
    except Exception:  # a broken __str__: nothing to remember, nothing written either
        return
    for name in ("message", "body"):
        value = getattr(error, name, None)
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            inner = value.get("message")
            if isinstance(inner, str):
                yield inner
            inner = (value.get("error") or {}) if isinstance(value.get("error"), dict) else {}
            if isinstance(inner.get("message"), str):
                yield inner["message"]


class WithheldTexts:
    """The recent error texts of LLM calls, and their removal from any text.

    Args:
        max_texts: how many messages are remembered (the oldest go first).
        max_chars: their total size.
        min_chars: a shorter message is replaced only where it is a whole value or follows ``": "`` (an
            exception's line), not inside other text (``"timeout"`` must not vanish from every span).
    """

    def __init__(self, max_texts: int = 256, max_chars: int = 2_000_000, min_chars: int = 12) -> None:
        self.max_texts, self.max_chars, self.min_chars = max_texts, max_chars, min_chars
        self._texts: deque[str] = deque()
        self._chars = 0
        self._lock = threading.Lock()
        self._snapshot: tuple[str, ...] = ()
        self._short: re.Pattern[str] | None = None

    def __len__(self) -> int:
        return len(self._snapshot)

    def add(self, error: BaseException) -> None:
        """Remember the message of ``error``, which left an LLM call."""
        texts = [t for t in dict.fromkeys(_messages(error)) if t.strip()]
        if not texts:
            return
        with self._lock:
            for text in texts:
                if text in self._texts:
                    continue
                self._texts.append(text)
                self._chars += len(text)
            while self._texts and (len(self._texts) > self.max_texts or self._chars > self.max_chars):
                self._chars -= len(self._texts.popleft())
            # Longest first: a message that contains another is replaced whole.
            self._snapshot = tuple(sorted(self._texts, key=len, reverse=True))
            short = [re.escape(t) for t in self._snapshot if len(t) < self.min_chars]
            self._short = re.compile(rf"(?:^|(?<=: ))(?:{'|'.join(short)})$", re.MULTILINE) if short else None

    def scrub(self, text: str) -> str:
        """``text`` with every remembered message replaced by :data:`WITHHELD`."""
        texts = self._snapshot
        if not texts or not text:
            return text
        for withheld in texts:
            if len(withheld) >= self.min_chars and withheld in text:
                text = text.replace(withheld, WITHHELD)
        short = self._short
        if short is not None:
            text = short.sub(WITHHELD, text)
        return text
