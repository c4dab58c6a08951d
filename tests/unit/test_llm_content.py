"""LLM content kept off spans through error paths (#34 finding 6): the remembered error texts and the span
exporter's use of them. End to end with the openai SDK, gunicorn and OTLP:
tests/integration/test_llm_error_content.py."""

import pytest
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode

from django_observe.llm.content import WITHHELD, WithheldTexts
from django_observe.redaction import get_redactor
from django_observe.tracing.redaction import redact_span

PROMPT_ERROR = "Error code: 400 - Invalid content: 'tell me about project nightingale' violates the policy"


class ProviderError(Exception):
    def __init__(self, message, body=None):
        super().__init__(message)
        self.message, self.body = message, body


def span(name="POST api/chat", attributes=None, description=None, events=()):
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    status = Status(StatusCode.ERROR, description) if description else Status(StatusCode.UNSET)
    return ReadableSpan(name=name, context=context, attributes=attributes or {}, events=list(events), status=status)


def exception_event(message, type_="BadRequestError"):
    trace = f'Traceback (most recent call last):\n  File "views.py", line 3, in chat\n    ask()\n{type_}: {message}\n'
    return Event(
        "exception",
        {"exception.type": type_, "exception.message": message, "exception.stacktrace": trace},
    )


def test_a_remembered_message_is_replaced_in_any_text():
    withheld = WithheldTexts()
    withheld.add(ProviderError(PROMPT_ERROR, body={"message": "'tell me about project nightingale' violates"}))
    assert withheld.scrub(f"BadRequestError: {PROMPT_ERROR}") == f"BadRequestError: {WITHHELD}"
    assert "nightingale" not in withheld.scrub("wrapped: 'tell me about project nightingale' violates, retry")
    assert withheld.scrub("an unrelated message") == "an unrelated message"


def test_a_short_message_is_replaced_only_as_a_whole_value_or_an_exception_line():
    withheld = WithheldTexts()
    withheld.add(ValueError("hi there"))
    assert withheld.scrub("hi there") == WITHHELD
    assert withheld.scrub("ValueError: hi there") == f"ValueError: {WITHHELD}"
    assert withheld.scrub("say hi there, then leave") == "say hi there, then leave"


def test_the_oldest_messages_are_forgotten_first():
    withheld = WithheldTexts(max_texts=2)
    for n in range(3):
        withheld.add(RuntimeError(f"message number {n} of three"))
    assert len(withheld) == 2
    assert withheld.scrub("message number 0 of three") == "message number 0 of three"
    assert withheld.scrub("message number 2 of three") == WITHHELD


def test_an_empty_or_unprintable_message_is_not_remembered():
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    withheld = WithheldTexts()
    withheld.add(RuntimeError())
    withheld.add(Unprintable())
    assert len(withheld) == 0


def test_every_span_that_recorded_the_exception_keeps_its_type_and_frames_not_its_message():
    withheld = WithheldTexts()
    withheld.add(ProviderError(PROMPT_ERROR))
    out = redact_span(
        span(description=f"BadRequestError: {PROMPT_ERROR}", events=[exception_event(PROMPT_ERROR)]),
        get_redactor(),
        withheld,
    )
    assert "nightingale" not in repr(out.to_json())
    attributes = out.events[0].attributes
    assert attributes["exception.type"] == "BadRequestError" and 'File "views.py"' in attributes["exception.stacktrace"]
    assert out.status.description == f"BadRequestError: {WITHHELD}"


def test_a_genai_span_keeps_no_error_text_even_one_not_remembered():
    message = "Error code: 400 - 'a prompt the SDK wrapper never saw'"
    genai = {"gen_ai.operation.name": "chat", "error.type": "BadRequestError"}
    out = redact_span(
        span("chat gpt-4o-mini", genai, description=message, events=[exception_event(message)]),
        get_redactor(),
        WithheldTexts(),
    )
    assert out.status.description == "BadRequestError"
    assert "never saw" not in repr(out.to_json())
    assert out.events[0].attributes["exception.message"] == WITHHELD


@pytest.mark.parametrize("withheld", [None, WithheldTexts()])
def test_other_spans_are_unchanged_when_nothing_is_withheld(withheld):
    original = span(description="ConnectionError: db down", events=[exception_event("db down", "ConnectionError")])
    out = redact_span(original, get_redactor(), withheld)
    assert out.status.description == "ConnectionError: db down"
    assert out.events[0].attributes["exception.message"] == "db down"


def test_content_capture_on_keeps_the_runtime_without_a_registry(observe):
    from django_observe import runtime

    observe(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="span_only")
    assert runtime.get_runtime().llm_errors is None
    observe()
    assert isinstance(runtime.get_runtime().llm_errors, WithheldTexts)


def test_an_error_leaving_llm_call_is_remembered(observe):
    from django_observe import llm_call, runtime

    observe()
    with pytest.raises(ProviderError), llm_call("gpt-4o-mini", "openai"):
        raise ProviderError(PROMPT_ERROR)
    assert runtime.get_runtime().llm_errors.scrub(PROMPT_ERROR) == WITHHELD
