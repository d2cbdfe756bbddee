"""Alerting in a real browser: the top bar's bell and a toast follow an alert that starts firing
without a reload (raising.event_raise -> apps.alerts.live -> Redis -> uvicorn's /ws/alerts/ ->
static/alerts/live.js), acknowledging from the alerts page takes it off every open page's bell,
the history page draws its Plotly charts, and the rule editor's preview charts a stored day."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page, expect

from apps.alerts import raising
from apps.alerts.domain.events import EventKind
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, AlertRule
from apps.core.domain.roles import Role
from apps.fleet.models import TelemetrySample
from tests.alerts.factories import AlertFactory, AlertRuleFactory
from tests.alerts.test_history import sim_device
from tests.browser.test_operator_pages import log_in
from tests.fleet.factories import DeviceFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE_S = 10_000  # ms: a websocket round trip through the real server


def console_errors(page: Page) -> list[str]:
    """The page's console errors and uncaught exceptions from now on (a broken script shows here)."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    return errors


def bell_connected(page: Page, firing: int) -> None:
    """live.js got the server's count (sent on connect): the socket is open and the bell shows it."""
    count = page.locator("#alert-bell-count")
    expect(count).to_have_text(str(firing), timeout=LIVE_S)
    if firing:
        expect(count).to_be_visible()
    else:
        expect(count).to_be_hidden()


def test_the_bell_counts_and_a_toast_links_to_an_alert_that_starts_firing(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    errors = console_errors(page)
    AlertRuleFactory(
        name="JobFailed",
        kind="event",
        event=EventKind.JOB_FAILED.value,
        metric="",
        threshold=None,
        for_seconds=0,
        severity="critical",
        summary="Job {{ labels.job }} failed",
    )
    log_in(page, asgi_server, make_user, Role.OPERATOR, "/")
    bell_connected(page, 0)
    expect(page.locator("#alert-toasts .toast")).to_have_count(0)

    (alert,) = raising.event_raise(event=EventKind.JOB_FAILED, labels={"job": "42", "kind": "fine_tune"})

    count = page.locator("#alert-bell-count")
    expect(count).to_have_text("1", timeout=LIVE_S)
    expect(count).to_be_visible()
    expect(page.locator("#alert-bell")).to_have_class(re.compile(r"\bfiring\b"))
    toast = page.locator("#alert-toasts a.toast")
    expect(toast).to_have_count(1)
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("JobFailed is firing")
    expect(toast).to_contain_text("Job 42 failed")
    expect(toast).to_have_class(re.compile(r"\bbad\b"))  # critical
    expect(toast).to_have_attribute("href", alert.get_absolute_url())
    assert page.evaluate("window.loadedOnce") is True  # no reload
    assert errors == []

    # The toast is the way in: it opens the alert's page.
    toast.click()
    page.wait_for_url(f"{asgi_server}{alert.get_absolute_url()}")
    expect(page.locator("main")).to_contain_text("JobFailed")


def test_acknowledging_from_the_alerts_page_takes_the_alert_off_every_bell(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    rule = AlertRuleFactory(name="GpuHot", severity="warning")
    alert = AlertFactory(rule=rule, series={"node": "gpu-01", "device": "gpu0"}, value=91.0)
    log_in(page, asgi_server, make_user, Role.OPERATOR, "/")
    bell_connected(page, 1)
    # A second tab on the alerts page, where the operator acts; the first stays on the Overview.
    alerts_tab = page.context.new_page()
    errors = console_errors(alerts_tab)
    alerts_tab.goto(f"{asgi_server}/alerts/")
    bell_connected(alerts_tab, 1)
    row = alerts_tab.locator("tr", has=alerts_tab.get_by_role("link", name="GpuHot"))
    expect(row).to_contain_text("firing")
    expect(row).not_to_contain_text("acknowledged")

    row.get_by_text("Acknowledge…").click()
    row.get_by_label("Comment").fill("swapping the fan")
    row.get_by_label("Mute repeats").select_option(label="1 hour")
    before = timezone.now()
    row.get_by_role("button", name="Acknowledge").click()

    alerts_tab.wait_for_url(f"{asgi_server}/alerts/")
    expect(alerts_tab.get_by_text("Acknowledged: others can see you are on it")).to_be_visible()
    row = alerts_tab.locator("tr", has=alerts_tab.get_by_role("link", name="GpuHot"))
    badge = row.locator(".badge", has_text="acknowledged by olga")
    expect(badge).to_be_visible()
    expect(badge).to_contain_text("until")
    expect(badge).to_have_attribute("title", "swapping the fan")
    bell_connected(alerts_tab, 0)
    # The Overview tab heard it: its bell is back to 0 without a reload.
    expect(page.locator("#alert-bell-count")).to_be_hidden(timeout=LIVE_S)
    expect(page.locator("#alert-bell-count")).to_have_text("0")
    assert page.evaluate("window.loadedOnce") is True

    alert.refresh_from_db()
    assert alert.state == AlertState.FIRING  # acknowledged, still firing
    assert alert.acknowledged
    assert alert.acknowledged_by.username == "olga"
    assert alert.ack_comment == "swapping the fan"
    assert alert.ack_expires_at is not None
    one_hour = alert.ack_expires_at - before
    assert dt.timedelta(minutes=59) < one_hour < dt.timedelta(minutes=61)
    assert errors == []


def _resolved(rule: object, n: int, *, fired: dt.datetime, minutes: int) -> Alert:
    return AlertFactory(
        rule=rule,
        series={"node": f"gpu-{n:02d}"},
        state=AlertState.RESOLVED.value,
        started_at=fired - dt.timedelta(minutes=1),
        fired_at=fired,
        resolved_at=fired + dt.timedelta(minutes=minutes),
    )


def test_the_history_page_charts_what_fired(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    errors = console_errors(page)
    now = timezone.now()
    hot, down = AlertRuleFactory(name="GpuHot"), AlertRuleFactory(name="NodeDown", severity="critical")
    _resolved(hot, 1, fired=now - dt.timedelta(days=3), minutes=30)
    _resolved(hot, 2, fired=now - dt.timedelta(days=1), minutes=90)
    _resolved(hot, 3, fired=now - dt.timedelta(hours=5), minutes=60)
    _resolved(down, 4, fired=now - dt.timedelta(days=2), minutes=15)

    log_in(page, asgi_server, make_user, Role.VIEWER, "/alerts/history/")

    expect(page.get_by_text("4 alerts fired")).to_be_visible()
    per_day, firing = page.locator("#history-per-day"), page.locator("#history-firing")
    expect(per_day.locator(".main-svg").first).to_be_attached(timeout=10_000)
    expect(firing.locator(".main-svg").first).to_be_attached(timeout=10_000)
    # The no-JavaScript placeholder goes once the chart draws (job.js clears its own the same way).
    expect(per_day.get_by_text("The chart draws here")).to_be_hidden()
    # One stacked bar trace per rule, four alerts in all; bars drawn for both rules.
    traces = per_day.evaluate("el => el.data.map(t => [t.name, t.y.reduce((a, b) => a + b, 0)])")
    assert sorted(traces) == [["GpuHot", 3], ["NodeDown", 1]]
    assert per_day.locator(".bars path").count() >= 3  # three days with a bar
    hours = firing.evaluate("el => Object.fromEntries(el.data[0].y.map((n, i) => [n, el.data[0].x[i]]))")
    assert hours == {"GpuHot": 3.0, "NodeDown": 0.25}
    expect(firing.locator(".bars path")).to_have_count(2)
    # The table beside the charts.
    table = page.locator("#history-table")
    gpu_hot = table.locator("tr", has=page.get_by_role("link", name="GpuHot"))
    expect(gpu_hot.locator("td").nth(2)).to_have_text("3")
    expect(table.locator("tbody tr")).to_have_count(2)
    assert errors == []


def test_the_rule_editor_previews_the_stored_day_on_a_chart(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    errors = console_errors(page)
    now = timezone.now().replace(second=0, microsecond=0)
    hot = sim_device()
    cool = DeviceFactory(node=hot.node, index=1)
    start = now - dt.timedelta(hours=6)
    rows = []
    for minute in range(6 * 60):  # a reading a minute: gpu0 at 92 °C for twenty minutes
        at = start + dt.timedelta(minutes=minute)
        heat = 92.0 if 120 <= minute < 140 else 60.0
        rows += [
            TelemetrySample(device=hot, at=at, temperature_c=heat),
            TelemetrySample(device=cool, at=at, temperature_c=50.0),
        ]
    TelemetrySample.objects.bulk_create(rows)

    log_in(page, asgi_server, make_user, Role.ADMIN, "/alerts/rules/new/")
    page.get_by_label("Name").fill("GpuHot")
    page.locator("select[name=metric]").select_option("DCGM_FI_DEV_GPU_TEMP")
    expect(page.locator("#matcher-labels")).to_contain_text("device")
    page.get_by_label("Threshold", exact=True).fill("85")
    page.locator("input[name=for_seconds]").fill("300")
    page.get_by_role("button", name="Preview the last day").click()

    result = page.locator("#rule-preview-result")
    expect(result).to_contain_text("Would have fired 1 time, 15 min in all", timeout=10_000)
    expect(result.locator("li")).to_have_count(1)
    expect(result.locator("li")).to_contain_text("peak 92")
    expect(result.locator("li")).to_contain_text("device=gpu0")
    chart = page.locator("#rule-preview-chart")
    expect(chart).to_be_visible()
    expect(chart.locator(".main-svg").first).to_be_attached(timeout=10_000)
    drawn = chart.evaluate(
        "el => ({series: el.data.length, peak: Math.max(...el.data[0].y),"
        " shapes: el.layout.shapes.map(s => s.type + ':' + (s.type === 'line' ? s.y0 : 'span'))})"
    )
    assert drawn["series"] == 2  # both devices, the one that alerted first
    assert drawn["peak"] == 92.0
    assert drawn["shapes"] == ["line:85", "rect:span"]  # the threshold, and where it would have fired
    assert not Alert.objects.exists()  # a preview saves nothing
    assert errors == []


def test_the_rule_editor_clears_the_other_kinds_fields_hints_event_labels_and_adds_matchers(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    errors = console_errors(page)
    log_in(page, asgi_server, make_user, Role.ADMIN, "/alerts/rules/new/")
    page.get_by_label("Name").fill("JobFailed")
    metric = page.locator("select[name=metric]")
    metric.select_option("DCGM_FI_DEV_GPU_TEMP")

    # A preview refused by the API reads as "field: why", not as the error body's keys.
    page.get_by_role("button", name="Preview the last day").click()
    result = page.locator("#rule-preview-result")
    expect(result).to_contain_text("threshold:", timeout=10_000)
    expect(result).not_to_contain_text("[object Object]")

    # Switching to an event rule empties the metric (hidden now: the server would refuse it).
    page.locator("select[name=kind]").select_option("event")
    expect(page.locator("#field-metric")).to_be_hidden()
    assert metric.input_value() == ""
    page.locator("select[name=event]").select_option("job_failed")
    expect(page.locator("#matcher-labels")).to_contain_text("queue")

    # A matcher added from the suggestion box goes after those typed, never in their place.
    page.locator("input[name=matchers]").fill('kind="fine_tune"')
    page.locator("#matcher-suggest").fill('queue="default"')
    page.locator("#matcher-suggest").press("Enter")
    assert page.locator("input[name=matchers]").input_value() == 'kind="fine_tune", queue="default"'
    assert page.url.endswith("/alerts/rules/new/")  # Enter there did not submit the form

    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/alerts/rules/\d+/$"))
    rule = AlertRule.objects.get(name="JobFailed")
    assert (rule.kind, rule.event, rule.metric, rule.threshold) == ("event", "job_failed", "", None)
    assert rule.matchers == [
        {"label": "kind", "op": "=", "value": "fine_tune"},
        {"label": "queue", "op": "=", "value": "default"},
    ]
    assert [e for e in errors if "status of 400" not in e] == []  # the preview's refusal, as intended


def test_the_rule_editor_never_hides_a_field_that_holds_an_error(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    log_in(page, asgi_server, make_user, Role.ADMIN, "/alerts/rules/new/")
    page.get_by_label("Name").fill("NoEvent")
    page.locator("select[name=kind]").select_option("event")
    expect(page.locator("#field-event")).to_be_visible()
    page.get_by_role("button", name="Save").click()  # an event rule without its event

    box = page.locator("#field-event")
    expect(box.locator(".error")).to_contain_text("required")
    expect(box).to_be_visible()
    # Back to a threshold rule: the event box holds an error, so it stays in sight.
    page.locator("select[name=kind]").select_option("threshold")
    expect(box).to_be_visible()
