"""The seed's business metrics, declared once with django_observe's API (used by views and tasks)."""

from django_observe.metrics import counter, histogram

# "Messages per hour: chat volume trend" -> sum(increase(chat_messages_processed_total[1h]))
MESSAGES_PROCESSED = counter("chat_messages_processed", "Chat messages answered by the background job.")
# "Token usage: daily/hourly consumption" -> sum by (model) (increase(llm_tokens_total[1d]))
TOKENS = counter("llm_tokens", "Tokens used, by model and kind (prompt, completion).", ["model", "kind"])
# "Campaign delivery rate: successful deliveries vs. failures"
DELIVERIES = counter("campaign_deliveries", "Campaign messages delivered, by result (succeeded, failed).", ["result"])
REPLY_DURATION = histogram("chat_reply_duration_seconds", "Time the background job takes to write a reply.", ["model"])


def tokens(text: str) -> int:
    """A stand-in tokenizer: words."""
    return len(text.split())
