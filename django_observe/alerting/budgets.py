"""LLM budget alerts (``LLM_DAILY_BUDGET``, ``LLM_HOURLY_BUDGET``, ``LLM_DAILY_TOKEN_BUDGET``) and their
promtool unit tests: plain dicts, like :mod:`django_observe.alerting.rules`.

Days and hours are rolling windows (the last 24 hours, the last hour), as Prometheus ranges are:

- ``LLMDailySpendOverBudget`` (warning, the seed's "Daily spending exceeds threshold"): the spend of the last
  24 hours is over the daily budget;
- ``LLMSpendProjectedOverDailyBudget`` (warning): at the last hour's rate, 24 hours would cost more than the
  daily budget: the budget will be blown before the day is out unless the rate drops;
- ``LLMHourlySpendOverBudget`` (warning): the spend of the last hour is over the hourly budget;
- ``LLMDailyTokensOverBudget`` (warning): input + output tokens of the last 24 hours over the token budget
  (the cache and reasoning counts are parts of those, never added).

Spend is ``gen_ai_client_cost_total`` in ``LLM_CURRENCY`` (its ``currency`` label).
"""

from __future__ import annotations

from typing import Any

from .promql import format_number, metric, promql_string

__all__ = ["ALERTS", "budget_groups", "budget_tests"]

COST = "gen_ai_client_cost_total"
TOKENS = "gen_ai_client_token_usage_sum"
ALERTS = (
    "LLMDailySpendOverBudget",
    "LLMSpendProjectedOverDailyBudget",
    "LLMHourlySpendOverBudget",
    "LLMDailyTokensOverBudget",
)
_JOB = "django"


def _cost(config: Any) -> str:
    return f"{metric(config.metrics_namespace, COST)}{{currency={promql_string(config.llm_currency)}}}"


def _tokens(config: Any) -> str:
    return f'{metric(config.metrics_namespace, TOKENS)}{{gen_ai_token_type=~"input|output"}}'


def _alert(name: str, expr: str, for_: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": "warning"},
        "annotations": {"summary": summary, "description": description},
    }


def _annotations(config: Any) -> dict[str, tuple[str, str]]:
    currency = config.llm_currency
    daily = format_number(config.llm_daily_budget or 0)
    hourly = format_number(config.llm_hourly_budget or 0)
    tokens = format_number(config.llm_daily_token_budget or 0)
    return {
        "LLMDailySpendOverBudget": (
            "Daily spending exceeds threshold",
            f"LLM spend over the last 24 hours is above the daily budget of {daily} {currency} (LLM_DAILY_BUDGET).",
        ),
        "LLMSpendProjectedOverDailyBudget": (
            "LLM spending on course to exceed the daily budget",
            f"At the last hour's rate, 24 hours of LLM calls would cost more than the daily budget of {daily} "
            f"{currency} (LLM_DAILY_BUDGET).",
        ),
        "LLMHourlySpendOverBudget": (
            "Hourly spending exceeds threshold",
            f"LLM spend over the last hour is above the hourly budget of {hourly} {currency} (LLM_HOURLY_BUDGET).",
        ),
        "LLMDailyTokensOverBudget": (
            "Daily token usage exceeds threshold",
            f"Input and output tokens over the last 24 hours are above the budget of {tokens} tokens "
            "(LLM_DAILY_TOKEN_BUDGET).",
        ),
    }


def budget_groups(config: Any) -> list[dict[str, Any]]:
    """The ``django-observe-llm-budgets`` group, or none when no budget is set.

    Args:
        config: the ObserveConfig (``LLM_*_BUDGET``, ``LLM_CURRENCY``, ``METRICS_NAMESPACE``).
    """
    notes = _annotations(config)
    rules = []
    cost = _cost(config)
    if config.llm_daily_budget is not None:
        daily = format_number(config.llm_daily_budget)
        rules.append(_alert("LLMDailySpendOverBudget", f"sum(increase({cost}[1d])) > {daily}", "5m", *notes[ALERTS[0]]))
        rules.append(
            _alert(
                "LLMSpendProjectedOverDailyBudget",
                f"sum(rate({cost}[1h])) * 86400 > {daily}",
                "15m",
                *notes[ALERTS[1]],
            )
        )
    if config.llm_hourly_budget is not None:
        hourly = format_number(config.llm_hourly_budget)
        rules.append(
            _alert("LLMHourlySpendOverBudget", f"sum(increase({cost}[1h])) > {hourly}", "5m", *notes[ALERTS[2]])
        )
    if config.llm_daily_token_budget is not None:
        tokens = format_number(config.llm_daily_token_budget)
        rules.append(
            _alert(
                "LLMDailyTokensOverBudget",
                f"sum(increase({_tokens(config)}[1d])) > {tokens}",
                "5m",
                *notes[ALERTS[3]],
            )
        )
    return [{"name": "django-observe-llm-budgets", "rules": rules}] if rules else []


def _fired(config: Any, *names: str) -> list[dict[str, Any]]:
    notes = _annotations(config)
    return [
        {
            "alertname": name,
            "exp_alerts": [
                {
                    "exp_labels": {"severity": "warning"},
                    "exp_annotations": dict(zip(("summary", "description"), notes[name], strict=True)),
                }
            ],
        }
        for name in names
    ]


def _quiet(*names: str) -> list[dict[str, Any]]:
    return [{"alertname": name, "exp_alerts": []} for name in names]


def budget_tests(config: Any) -> list[dict[str, Any]]:
    """promtool test cases: each budget alert firing on a spend (or token use) above its budget and quiet on
    one below it. Three hours of samples every 5 minutes, evaluated at the end (a counter that starts within
    the window counts from its first sample, so three hours can hold a day's spend; 25 hours of samples made
    promtool take half a minute).

    - over: 1.44 daily budgets in three hours (and 1.44 token budgets): every alert fires;
    - under: a rate that stays under every budget, hour, day and projection: all quiet;
    - burst: nothing for two hours, then a fifth of the daily budget (or 2.4 hourly budgets, the larger) in the
      last hour: the projection and the hourly alert fire, the day stays under budget.
    """
    ns = config.metrics_namespace
    currency = promql_string(config.llm_currency)
    cost_labels = 'gen_ai_provider_name="openai",gen_ai_request_model="m",gen_ai_token_type="output"'
    cost_series = f"{metric(ns, COST)}{{job={promql_string(_JOB)},{cost_labels},currency={currency}}}"
    steps = 36  # 5-minute steps in three hours
    cases: list[dict[str, Any]] = []

    def case(name: str, series: list[dict[str, str]], checks: list[dict[str, Any]]) -> None:
        if checks:
            cases.append(
                {
                    "name": f"LLM budgets: {name}",
                    "interval": "5m",
                    "input_series": series,
                    "alert_rule_test": [{**c, "eval_time": "3h"} for c in checks],
                }
            )

    def spend(per_step: float) -> list[dict[str, str]]:
        return [{"series": cost_series, "values": f"0+{format_number(per_step)}x{steps}"}]

    daily, hourly = config.llm_daily_budget, config.llm_hourly_budget
    spending = [n for n, budget in ((ALERTS[0], daily), (ALERTS[1], daily), (ALERTS[2], hourly)) if budget]
    if daily:
        case(
            "1.44 daily budgets fire the daily alert and its projection",
            spend(daily * 1.44 / steps),
            _fired(config, *ALERTS[:2]),
        )
    if spending:
        hourly_rate = min(x for x in ((daily or 0) / 48, (hourly or 0) / 2) if x > 0)  # per hour
        case("a rate under every budget is quiet", spend(hourly_rate / 12), _quiet(*spending))
        burst = max((daily or 0) / 5, 2.4 * (hourly or 0)) / 12  # per 5 minutes, in the last hour
        checks = _fired(config, *[n for n in spending if n != ALERTS[0]])
        if daily and burst * 12 < daily:
            checks += _quiet(ALERTS[0])
        values = f"0x{steps - 13} 0+{format_number(burst)}x12"
        case(
            "a burst in the last hour fires the projection and the hourly budget",
            [{"series": cost_series, "values": values}],
            checks,
        )
    tokens_budget = config.llm_daily_token_budget
    if tokens_budget:
        labels = (
            f'job={promql_string(_JOB)},gen_ai_operation_name="chat",gen_ai_provider_name="openai",'
            'gen_ai_request_model="m",gen_ai_response_model="m"'
        )

        def tokens(kind: str, share: float) -> dict[str, str]:
            return {
                "series": f'{metric(ns, TOKENS)}{{{labels},gen_ai_token_type="{kind}"}}',
                "values": f"0+{format_number(tokens_budget * share / steps)}x{steps}",
            }

        case(
            "tokens over the daily budget fire",
            [tokens("input", 1.2), tokens("output", 0.24)],
            _fired(config, ALERTS[3]),
        )
        case(
            "cache and reasoning tokens are parts of input and output: not counted twice",
            [tokens("input", 0.5), tokens("output", 0.2), tokens("cache_read", 0.45), tokens("reasoning", 0.15)],
            _quiet(ALERTS[3]),
        )
    return cases
