"""A small API in the shape of the seed's chat flow: auth, a DB query, a cache call, a Celery task, an LLM call."""

import asyncio
import json
import logging
import time

from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from django_observe import retrieval
from django_observe.metrics import authorization
from django_observe.tracing import get_tracer

from . import llm
from .metrics import TOKENS, tokens
from .models import Agent, ApiToken, ChatSession, Message
from .outbound import call_outbound, loopback_url
from .tasks import deliver, process_message

logger = logging.getLogger("api.chat")
tracer = get_tracer(__name__)


def _authenticate(request: HttpRequest):
    """Bearer token authentication, timed as the seed's authorization step."""
    with authorization("api_token") as auth:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return None
        token = ApiToken.objects.select_related("user").filter(key=key.strip()).first()
        auth.decision = "allow" if token else "deny"
        return token.user if token else None


@require_GET
def ping(request: HttpRequest) -> JsonResponse:
    """A trivial view (benchmarks compare the cost of observability on it)."""
    return JsonResponse({"pong": True})


@csrf_exempt
@require_POST
def chat(request: HttpRequest) -> JsonResponse:
    """With ``OPENAI_BASE_URL`` set, answers now with the seed's trace tree (auth.validate_token, db.get_agent,
    db.get_session, knowledge.search, llm.chat_completion, db.save_message, billing.record_usage); without it,
    the ``process_message`` task writes the reply (202)."""
    start = time.perf_counter()
    with tracer.start_as_current_span("auth.validate_token"):
        user = _authenticate(request)
    if user is None:
        return JsonResponse({"error": "authentication required"}, status=401)
    request.user = user
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "body must be JSON"}, status=400)
    text = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip():
        return JsonResponse({"error": '"message" must be a non-empty string'}, status=400)
    model = payload.get("model") or "echo-1"
    if not isinstance(model, str):
        return JsonResponse({"error": '"model" must be a string'}, status=400)
    url = llm.base_url()
    if url is not None:
        return _answer(request, user, text[:2000], payload.get("agent"), url, start)
    message = Message.objects.create(user=user, text=text[:2000])
    TOKENS.labels(model=model[:64], kind="prompt").inc(tokens(message.text))
    count_key = f"chat:count:{user.pk}"
    cache.add(count_key, 0, timeout=3600)
    count = cache.incr(count_key)
    process_message.delay(message.pk, model[:64])
    duration_ms = round((time.perf_counter() - start) * 1000, 1)
    logger.info(
        "Chat request processed",
        extra={"user_id": str(user.pk), "message_id": message.pk, "duration_ms": duration_ms},
    )
    return JsonResponse({"id": message.pk, "status": "queued", "messages_this_hour": count}, status=202)


def _answer(request: HttpRequest, user, text: str, agent_name: object, url: str, start: float) -> JsonResponse:
    """The synchronous chat flow of the seed's trace example."""
    with tracer.start_as_current_span("db.get_agent") as span:
        name = agent_name[:64] if isinstance(agent_name, str) and agent_name else "assistant"
        agent, _ = Agent.objects.get_or_create(name=name)
        span.set_attribute("agent.id", agent.pk)
    with tracer.start_as_current_span("db.get_session"):
        session, _ = ChatSession.objects.get_or_create(user=user, agent=agent)
    with tracer.start_as_current_span("knowledge.search") as span:
        # The seed's pgvector.similarity_search, as a GenAI retrieval (a text match stands in for the vectors).
        with retrieval("pgvector", name="pgvector.similarity_search", top_k=3) as search:
            words = [w for w in text.split() if len(w) > 3][:3]
            found = list(Message.objects.filter(user=user, text__icontains=words[0])[:3]) if words else []
            search.record(documents=len(found), query=text)
        span.set_attribute("knowledge.results", len(found))
    messages = [{"role": "system", "content": agent.instructions}]
    messages += [{"role": "system", "content": f"Earlier: {m.text[:200]}"} for m in found]
    messages.append({"role": "user", "content": text})
    with tracer.start_as_current_span("llm.chat_completion"):
        reply, input_tokens, output_tokens = llm.run_agent(url, agent, messages)
    with tracer.start_as_current_span("db.save_message"):
        message = Message.objects.create(user=user, text=text, reply=reply[:4000], processed=True)
    with tracer.start_as_current_span("billing.record_usage"):
        TOKENS.labels(model=agent.model, kind="prompt").inc(input_tokens)
        TOKENS.labels(model=agent.model, kind="completion").inc(output_tokens)
        count_key = f"chat:count:{user.pk}"
        cache.add(count_key, 0, timeout=3600)
        count = cache.incr(count_key)
    logger.info(
        "Chat request processed",
        extra={
            "user_id": str(user.pk),
            "agent_id": str(agent.pk),
            "session_id": session.pk,
            "duration_ms": round((time.perf_counter() - start) * 1000, 1),
            "tokens_used": input_tokens + output_tokens,
        },
    )
    return JsonResponse(
        {
            "id": message.pk,
            "reply": reply,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            "messages_this_hour": count,
        }
    )


@csrf_exempt
@require_POST
def campaign(request: HttpRequest) -> JsonResponse:
    """Send a campaign: one ``deliver`` task per recipient (the seed's delivery success rate)."""
    if _authenticate(request) is None:
        return JsonResponse({"error": "authentication required"}, status=401)
    try:
        recipients = json.loads(request.body or b"{}").get("recipients")
    except (ValueError, AttributeError):
        recipients = None
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients) or len(recipients) > 1000:
        return JsonResponse({"error": '"recipients" must be a list of at most 1000 strings'}, status=400)
    for recipient in recipients:
        deliver.delay(recipient)
    return JsonResponse({"queued": len(recipients)}, status=202)


@require_GET
def message_detail(request: HttpRequest, message_id: int) -> JsonResponse:
    user = _authenticate(request)
    if user is None:
        return JsonResponse({"error": "authentication required"}, status=401)
    message = get_object_or_404(Message, pk=message_id, user=user)
    return JsonResponse(
        {"id": message.pk, "text": message.text, "reply": message.reply, "processed": message.processed}
    )


def _marker(request: HttpRequest) -> str:
    return request.GET.get("marker", "")[:64]


def _sleep_seconds(request: HttpRequest) -> float:
    """``?sleep_ms=`` (default 10, at most 2000): slow requests for the sampling tests."""
    try:
        return min(max(float(request.GET.get("sleep_ms", 10)), 0.0), 2000.0) / 1000
    except ValueError:
        return 0.01


@require_GET
def work(request: HttpRequest) -> JsonResponse:
    """Logs a line, sleeps a little, logs again: concurrent requests interleave (correlation tests)."""
    logger.info("work started", extra={"marker": _marker(request)})
    time.sleep(_sleep_seconds(request))
    logger.info("work done", extra={"marker": _marker(request)})
    return JsonResponse({"marker": _marker(request)})


async def awork(request: HttpRequest) -> JsonResponse:
    """The async twin of ``work`` (runs on the event loop under ASGI)."""
    logger.info("work started", extra={"marker": _marker(request)})
    await asyncio.sleep(0.01)
    logger.info("work done", extra={"marker": _marker(request)})
    return JsonResponse({"marker": _marker(request)})


@require_GET
def users_report(request: HttpRequest) -> JsonResponse:
    """The classic N+1: one query per user instead of one for all (``?n=`` lookups, at most 200)."""
    from django.contrib.auth import get_user_model

    n = min(int(request.GET.get("n", "12") or 0), 200)
    found = sum(get_user_model().objects.filter(pk=i).exists() for i in range(1, n + 1))
    return JsonResponse({"looked_up": n, "found": found})


@require_GET
def message_stats(request: HttpRequest) -> JsonResponse:
    """One query and one cache read per request (the django-prometheus test)."""
    return JsonResponse({"messages": Message.objects.count(), "cached": cache.get("stats:last") is not None})


@require_GET
def slow(request: HttpRequest) -> JsonResponse:
    """Sleeps ``?ms=`` milliseconds (at most 2000): a latency outlier for the exemplar tests."""
    time.sleep(min(int(request.GET.get("ms", "300") or 0), 2000) / 1000)
    return JsonResponse({"slept_ms": request.GET.get("ms", "300")})


@require_GET
def db_sleep(request: HttpRequest) -> JsonResponse:
    """Holds one PostgreSQL statement open for ``?ms=`` milliseconds (at most 3000), inside a transaction with a
    savepoint, after an EXPLAIN: what the server saw of a request's SQL can be read from pg_stat_activity."""
    from django.db import connection, transaction

    seconds = min(int(request.GET.get("ms", "1500") or 0), 3000) / 1000
    with transaction.atomic(), transaction.atomic():  # the inner block is a savepoint
        explained = Message.objects.filter(id=1).explain()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s)", [seconds])
            cursor.execute("SELECT 1")  # a statement without parameters keeps a single %
    return JsonResponse({"slept_ms": seconds * 1000, "explain": bool(explained)})


@require_GET
def crash(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("demo crash password=hunter2")


@require_GET
def enqueue(request: HttpRequest) -> JsonResponse:
    """Publish ``process_message``-like work without auth: a task and its child (correlation tests); ``?fail=1``
    publishes the ``fail`` task."""
    from .tasks import add, chain_parent, fail, lookups

    if request.GET.get("fail"):
        result = fail.delay("planned failure")
    elif request.GET.get("chain"):
        result = chain_parent.delay(_marker(request))
    elif request.GET.get("lookups"):
        result = lookups.delay(min(int(request.GET["lookups"]), 200))
    else:
        result = add.delay(1, 2)
    return JsonResponse({"task_id": result.id}, status=202)


@require_GET
def llm_direct(request: HttpRequest) -> JsonResponse:
    """One LLM call through the SDK itself (``?provider=openai|anthropic&stream=1``; ``&task=1``: in a Celery
    task instead), nothing of django_observe around it."""
    from .tasks import llm_direct as task

    provider = "anthropic" if request.GET.get("provider") == "anthropic" else "openai"
    stream = request.GET.get("stream") == "1"
    if request.GET.get("task"):
        return JsonResponse({"task_id": task.delay(provider, stream).id}, status=202)
    return JsonResponse({"reply": llm.direct_call(provider, stream)})


@require_GET
def enqueue_django_task(request: HttpRequest) -> JsonResponse:
    """Enqueue a task of Django's tasks framework (``?fail=1``: one that raises)."""
    from .background import broken_report, count_users

    task = broken_report if request.GET.get("fail") else count_users
    result = task.enqueue(request.GET.get("label", "x")[:50])
    return JsonResponse({"task_id": str(result.id)}, status=202)


@require_GET
def enqueue_rq_job(request: HttpRequest) -> JsonResponse:
    """Enqueue an RQ job with django-rq (``?fail=1``: one that raises, on the ``reports`` queue)."""
    import django_rq

    from .jobs import broken_report, count_users

    label = request.GET.get("label", "x")[:50]
    if request.GET.get("fail"):
        job = django_rq.get_queue("reports").enqueue(broken_report, label)
    else:
        job = django_rq.enqueue(count_users, label)
    return JsonResponse({"job_id": job.id}, status=202)


# --- outbound calls (propagation tests). Only loopback targets: these views must not become an SSRF.

OUTBOUND_CLIENTS = ("requests", "requests_session", "httpx", "httpx_client")


def _outbound_target(request: HttpRequest) -> str | None:
    return loopback_url(request.GET.get("url"))


@require_GET
def outbound(request: HttpRequest) -> JsonResponse:
    """Call ``?url=`` (loopback only) with ``?client=`` (requests, requests_session, httpx, httpx_client),
    or with ``?via=task`` from the Celery task ``fetch``."""
    url = _outbound_target(request)
    client = request.GET.get("client", "requests")
    if url is None or client not in OUTBOUND_CLIENTS:
        accepted = ", ".join(OUTBOUND_CLIENTS)
        return JsonResponse({"error": f"url must be an http:// loopback URL; client one of {accepted}"}, status=400)
    if request.GET.get("via") == "task":
        from .tasks import fetch

        return JsonResponse({"task_id": fetch.delay(url, client).id}, status=202)
    return JsonResponse({"status": call_outbound(url, client), "client": client})


async def aoutbound(request: HttpRequest) -> JsonResponse:
    """The async twin of ``outbound``: ``httpx.AsyncClient`` on the event loop (loopback only)."""
    import httpx

    url = _outbound_target(request)
    if url is None:
        return JsonResponse({"error": "url must be an http:// loopback URL"}, status=400)
    async with httpx.AsyncClient(timeout=5, follow_redirects=False) as http:
        response = await http.get(url)
    return JsonResponse({"status": response.status_code, "client": "httpx_async"})


# --- careless logging of hostile input (the hostile corpus in tests/reliability): everything a request
# brings is logged the ways real code does, so redaction and escaping are tested where it matters.


class Described:
    """An object whose text names a secret (a client, a connection): its ``str()`` runs at render time."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


def _hostile_body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return {"raw": request.body.decode("utf-8", "replace")}
    return body if isinstance(body, dict) else {"raw": body}


@csrf_exempt
def hostile(request: HttpRequest) -> JsonResponse:
    """Logs the query (as message arguments and in ``extra``), the JSON body, headers, cookies and an object;
    ``?dsn=`` logs an exception naming it, ``?url=`` calls that loopback URL, a body ``task`` enqueues
    ``echo_hostile`` with the body's ``task_headers`` as message headers, a body ``lookup`` is looked up as a
    user name (a SQL parameter), a body ``ask`` is sent to the model as the prompt (its failure logged with its
    traceback). Neither is logged itself: only the body's ``payload`` is, when there is one."""
    params = request.GET.dict()
    body = _hostile_body(request)
    logger.warning("args %s", params)
    logger.info(
        "payload",
        extra={
            "payload": body.get("payload", body),
            "headers": dict(request.headers),
            "cookies": request.COOKIES,
            "client": Described(params.get("dsn", "")),
        },
    )
    if params.get("dsn"):
        try:
            raise ConnectionError(f"could not reach {params['dsn']}")
        except ConnectionError:
            logger.exception("upstream failed")
    url = loopback_url(params.get("url"))
    if url is not None:
        call_outbound(url, params.get("client") if params.get("client") in OUTBOUND_CLIENTS else "requests")
    if isinstance(body.get("lookup"), str):
        from django.contrib.auth.models import User

        User.objects.filter(username=body["lookup"]).exists()
    if isinstance(body.get("ask"), str):
        try:
            llm.ask(body["ask"])
        except Exception:
            logger.exception("model call failed")
    task = body.get("task")
    if isinstance(task, dict):
        from .tasks import echo_hostile

        headers = body.get("task_headers")
        headers = {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else None
        echo_hostile.apply_async(args=[task], headers=headers)
    return JsonResponse({"logged": sorted(params)})


@csrf_exempt
def hostile_crash(request: HttpRequest) -> JsonResponse:
    """Crashes on purpose (500) with the query in the exception message; a POSTed body ``ask`` is sent to the
    model as the prompt and its failure is not caught (the request fails with the SDK's exception)."""
    if request.method == "POST":
        prompt = _hostile_body(request).get("ask")
        if isinstance(prompt, str):
            llm.ask(prompt)
    raise RuntimeError(f"crash while calling {request.GET.get('dsn', '')} with {request.GET.dict()}")
