"""The cardinality guard bounds series per metric, for the whole service (issue #34 finding 7).

Before: GenAI labels were guarded one by one (60 request models x 60 response models gave 3,600 duration
series and 7,200 token series in one process, overflow counter 0), and every budget lived in one process
(a recycled worker or a sibling started again from zero).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from prometheus_client import CollectorRegistry

from django_observe.llm.usage import Usage
from django_observe.metrics.cardinality import DIRECTORY, Admissions, encode
from django_observe.metrics.catalogue import build_catalogue
from django_observe.metrics.genai import CallFacts, record_llm_call
from django_observe.metrics.storage import compact


def series(registry: CollectorRegistry, family: str) -> set[tuple]:
    """Distinct label sets of ``family``'s ``_count`` samples."""
    return {
        tuple(sorted(s.labels.items()))
        for metric in registry.collect()
        if metric.name == family
        for s in metric.samples
        if s.name == f"{family}_count"
    }


def overflow(registry: CollectorRegistry, metric: str) -> float:
    return sum(
        s.value
        for m in registry.collect()
        if m.name == "metrics_label_overflow"
        for s in m.samples
        if s.name == "metrics_label_overflow_total" and s.labels["metric"] == metric
    )


def test_genai_series_are_bounded_per_metric_not_per_label():
    limit = 100
    registry = CollectorRegistry()
    catalogue = build_catalogue(registry=registry, max_label_values=limit)
    for request_model in range(60):
        for response_model in range(60):
            facts = CallFacts(
                "chat",
                "openai",
                f"req-{request_model}",
                f"resp-{response_model}",
                seconds=0.1,
                usage=Usage(input=3, output=5),
            )
            record_llm_call(catalogue, facts, None, "USD")
    duration = series(registry, "gen_ai_client_operation_duration_seconds")
    tokens = series(registry, "gen_ai_client_token_usage")
    print(f"60 x 60 models, limit {limit}: {len(duration)} duration series, {len(tokens)} token series")
    assert len(duration) <= limit + 1  # the admitted ones and the __other__ one
    assert len(tokens) <= limit + 2  # the __other__ ones keep their token type (input, output)
    assert overflow(registry, "gen_ai_client_operation_duration_seconds") == 3600 - limit
    assert overflow(registry, "gen_ai_client_token_usage") > 0
    # Nothing is lost: every call is counted, in its own series or in __other__.
    counts = [
        s.value
        for m in registry.collect()
        if m.name == "gen_ai_client_operation_duration_seconds"
        for s in m.samples
        if s.name.endswith("_count")
    ]
    assert sum(counts) == 3600


def test_a_budget_is_shared_by_the_processes_of_a_service(tmp_path):
    """Four real processes admit 300 keys each (200 of them their own) against one budget of 50: the
    budget's file holds exactly 50 distinct keys, and every process admitted only keys in it."""
    script = textwrap.dedent(
        """
        import sys
        from django_observe.metrics.cardinality import Admissions, encode
        budget = Admissions("shop_orders", 50, sys.argv[1])
        me = sys.argv[2]
        keys = [encode([f"shared-{i}"]) for i in range(100)] + [encode([f"{me}-{i}"]) for i in range(200)]
        admitted = [k for k in keys if budget.admit(k)]
        print("\\n".join(admitted))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), f"p{n}"], stdout=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    lines = (tmp_path / DIRECTORY / "shop_orders.keys").read_text().splitlines()
    assert len(lines) == len(set(lines)) == 50
    for out in outputs:
        assert set(out.split()) <= set(lines)


def test_a_recycled_process_keeps_the_budget_and_compaction_leaves_it(tmp_path):
    first = Admissions("shop_orders:region", 3, str(tmp_path))
    assert [first.admit(encode([v])) for v in "abcd"] == [True, True, True, False]
    (tmp_path / "counter_999999.db").write_bytes(b"")  # a dead process's file: compacted, removed
    compact(str(tmp_path), lambda pid: False)
    assert (tmp_path / DIRECTORY / "shop_orders:region.keys").exists()
    # The next worker (a new process; here a new object, as a recycled worker builds one) starts from it.
    second = Admissions("shop_orders:region", 3, str(tmp_path))
    assert second.admit(encode(["a"])) and second.admit(encode(["c"]))
    assert not second.admit(encode(["e"]))


def test_label_guards_share_their_budget_through_the_directory(tmp_path):
    registry = CollectorRegistry()
    one = build_catalogue(registry=registry, max_label_values=2, directory=str(tmp_path))
    other = build_catalogue(registry=CollectorRegistry(), max_label_values=2, directory=str(tmp_path))
    route = one.guard("http_server_request_duration_seconds", "route")
    assert [route("a"), route("b")] == ["a", "b"]
    sibling = other.guard("http_server_request_duration_seconds", "route")
    assert [sibling("b"), sibling("c")] == ["b", "__other__"]


def test_a_directory_that_cannot_be_written_keeps_the_bound_in_the_process(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")  # not a directory: the budget's directory cannot be created under it
    budget = Admissions("m", 2, str(blocked))
    assert [budget.admit(encode([v])) for v in "abc"] == [True, True, False]
