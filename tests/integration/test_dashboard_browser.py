"""The web dashboard in a real headless Chromium against a running `trustship serve`
(anvil, mosquitto, PostgreSQL) while the cold-chain breach scenario is published.

The page is opened before the order exists and never reloaded: the order appears, the
early warning shows before the breach window is marked on the chart, then the
settlement appears. The auditor's write actions are disabled; the keyboard reaches the
main controls; a phone-width viewport does not overflow; a wrong API key gets a clear
message. A screenshot of each view goes to reports/dashboard/. Any console error or
uncaught exception on a page fails the test.

The scenario is published in three parts: the calm first two days as fast as the
broker takes them, the hours around the compressor failure at 1,000× (so the
warning's lead of about 75 minutes is seconds on screen), and the rest at full speed.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.chain.connection import connect
from iot_simulator import Fleet, build_fleet, load_scenario
from iot_simulator.fleet import Message
from iot_simulator.publisher import publish
from testkit.dashboard import ConsoleLog, browser, chromium_path, sign_in
from testkit.serve import served_stack
from trustship.stack import DEV_API_KEYS, ApiDriver, PartyAction

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.skipif(chromium_path() is None, reason="no chromium (scripts/system_packages.sh)"),
]

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "reports" / "dashboard"
SCENARIO = REPO / "scenarios" / "cold_chain_breach.yaml"
DISPUTED = REPO / "scenarios" / "disputed_ruling.yaml"
#: the compressor fails at day 2 00:00; the breach is provable about 2.5 h later
SLOW_FROM_S, SLOW_UNTIL_S, SLOW_SPEED = 172_800 - 1_800, 172_800 + 10_800, 1_000.0

#: records when each marker first shows on the page (performance.now(), ms)
MARKERS = {
    "warning": "[data-testid=alert-list] :is([data-kind=risk_breach], [data-kind=trend])",
    "breach": "[data-testid=breach-window]",
    "settlement": "[data-testid=settlement]",
    "chart": "[data-testid=chart] canvas",
}
OBSERVER = """
(() => {
  window.__seen = {};
  const markers = %s;
  const look = () => {
    for (const [name, sel] of Object.entries(markers)) {
      if (!(name in window.__seen) && document.querySelector(sel)) {
        window.__seen[name] = performance.now();
      }
    }
  };
  new MutationObserver(look).observe(document, { childList: true, subtree: true });
})();
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    with served_stack(
        tmp_path,
        "dashboard",
        anvil_args=("--block-time", "1"),
        broker_conf="allow_anonymous true\nmax_queued_messages 200000\n",
        extra_env={"ORACLE_COMMIT_MAX_AGE_SECS": "2"},
    ) as s:
        yield s.base, s.anvil.extra["url"], s.broker.extra["url"]


def voyage(
    driver: ApiDriver, chain: Any, mqtt_url: str, path: Path
) -> tuple[int, Fleet, list[Message]]:
    """Open and ship ``path``'s one order through the API and move the chain's clock past
    its voyage; its order id, fleet and telemetry messages."""
    scenario = load_scenario(path)
    t0 = chain.now() + 1
    ids = driver.open_orders(scenario, t0, lambda _m: None)
    fleet = build_fleet(scenario, driver.domain, ids, t0=t0)
    driver.ship(fleet, lambda _m: None, [o.name for o in scenario.orders])
    end = fleet.end_time + 60
    chain.time_travel(end)
    driver.wait_for_oracle_clock(end, timeout=30.0)
    (order_id,) = ids.values()
    return order_id, fleet, list(fleet.messages())


def run_scenario(base: str, rpc_url: str, mqtt_url: str, failures: list[BaseException]) -> None:
    """The cold-chain breach: its order opened and shipped, then its telemetry published."""
    try:
        driver = ApiDriver(base, connect(rpc_url=rpc_url), mqtt_url, DEV_API_KEYS)
        _, fleet, messages = voyage(driver, driver.chain, mqtt_url, SCENARIO)
        parts = [
            ([m for m in messages if m.offset_s < SLOW_FROM_S], math.inf),
            # pacing counts from offset 0: the slow part's offsets from its own start
            (
                [
                    replace(m, offset_s=m.offset_s - SLOW_FROM_S)
                    for m in messages
                    if SLOW_FROM_S <= m.offset_s < SLOW_UNTIL_S
                ],
                SLOW_SPEED,
            ),
            ([m for m in messages if m.offset_s >= SLOW_UNTIL_S], math.inf),
        ]
        for part, speed in parts:
            publish(fleet, mqtt_url, speed=speed, progress=False, messages=iter(part))
    except BaseException as exc:  # reported by the test
        failures.append(exc)


def disputed_order(base: str, rpc_url: str, mqtt_url: str) -> int:
    """The disputed-ruling scenario's order, delivered and disputed by the buyer."""
    driver = ApiDriver(base, connect(rpc_url=rpc_url), mqtt_url, DEV_API_KEYS)
    order_id, fleet, messages = voyage(driver, driver.chain, mqtt_url, DISPUTED)
    publish(fleet, mqtt_url, speed=math.inf, progress=False, messages=iter(messages))
    deadline = time.monotonic() + 60
    while driver.outcome(order_id).state != "Delivered":
        assert time.monotonic() < deadline, driver.diagnose(order_id)
        time.sleep(0.3)
    driver.act(order_id, PartyAction("dispute", "buyer"), lambda _m: None)
    return order_id


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def no_overflow(page: Any) -> bool:
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def unnamed_controls(page: Any) -> list[str]:
    """Buttons, links, inputs and selects without an accessible name."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('button, a[href], input, select')]
            .filter((e) => e.offsetParent !== null)
            .filter((e) => !(e.getAttribute('aria-label') || (e.labels && e.labels.length)
                             || e.textContent.trim() || e.title))
            .map((e) => e.outerHTML.slice(0, 80))"""
        )
    )


def test_the_dashboard_follows_a_breach_live(served: tuple[str, str, str]) -> None:
    base, rpc_url, mqtt_url = served
    console = ConsoleLog()
    failures: list[BaseException] = []
    with browser() as b:
        # a wrong key: a clear message, and the form stays (the browser logs the 401 fetch)
        ctx = b.new_context(viewport={"width": 1280, "height": 900})
        wrong = ctx.new_page()
        wrong_log = ConsoleLog()
        wrong_log.watch(wrong, "wrong key")
        sign_in(wrong, base, "not-a-key")
        error = wrong.locator("#sign-in-error [data-testid=error]")
        error.wait_for()
        assert "API key was refused" in error.inner_text()
        assert "unknown API key" in error.inner_text()
        shot(wrong, "sign-in-refused")
        assert all("401" in e for e in wrong_log.errors), wrong_log.errors
        wrong.close()

        # the buyer opens the dashboard before there is any order
        page = ctx.new_page()
        console.watch(page, "buyer")
        page.add_init_script(OBSERVER % repr(MARKERS).replace("'", '"'))
        loads: list[str] = []
        page.on("load", lambda p: loads.append(p.url))
        sign_in(page, base, "dev-buyer")
        page.locator("[data-testid=orders-table][data-ready=true]").wait_for()
        assert page.get_by_test_id("empty").is_visible()
        shot(page, "orders-empty")

        worker = threading.Thread(target=run_scenario, args=(base, rpc_url, mqtt_url, failures))
        worker.start()
        try:
            row = page.locator("tr[data-order]").first
            row.wait_for(timeout=90_000)
            # keyboard: from the top of the page, Tab reaches the nav, filters and the order
            page.locator("body").focus()
            reached: set[str] = set()
            for _ in range(14):
                page.keyboard.press("Tab")
                reached.add(
                    page.evaluate(
                        "(() => { const e = document.activeElement;"
                        " return (e.id || e.textContent.trim() || e.tagName).slice(0, 30); })()"
                    )
                )
            assert {"Orders", "Alerts", "f-state", "f-role", "f-text"} <= reached, reached
            assert any(r.startswith("#") for r in reached), reached  # an order's link
            assert unnamed_controls(page) == []
            order_id = row.get_attribute("data-order")
            page.locator(f"a[href='#/orders/{order_id}']").focus()
            page.keyboard.press("Enter")
            page.locator("[data-testid=chart] canvas").first.wait_for(timeout=60_000)
            page.locator("[data-testid=alert-list] [data-kind=risk_breach]").first.wait_for(
                timeout=90_000
            )
            page.locator("[data-testid=breach-window]").wait_for(timeout=90_000)
            shot(page, "shipment-breach")
            page.locator("[data-testid=settlement]").wait_for(timeout=120_000)
        except Exception:
            shot(page, "failure")
            raise
        finally:
            worker.join(timeout=180)
        assert not failures, failures
        seen = page.evaluate("window.__seen")
        assert seen["warning"] < seen["breach"] < seen["settlement"], seen
        assert len(loads) == 1, loads  # one page load: everything after came live
        assert "Breach proven on chain" in page.get_by_test_id("breach-window").inner_text()
        assert page.locator("#settlement").get_by_text("To the buyer").is_visible()
        assert "19,200 TUSD" in page.locator("#settlement").inner_text()  # 40 % of 48,000
        assert unnamed_controls(page) == []
        shot(page, "shipment-settled")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / "dashboard.png"))  # the README's (docs/img/)

        for name in ("alerts", "suppliers"):
            page.get_by_role("link", name=name.capitalize(), exact=True).click()
            view = page.locator(f"section[data-view={name}]")
            view.locator(":is(table, ol, .empty, .error)").first.wait_for()
            assert view.locator("[data-testid=error]").count() == 0
            shot(page, name)

        # the arbiter: no open dispute, then the buyer disputes another order; its card
        # shows the evidence, and the arbiter's ruling from the page resolves it
        arb = ctx.new_page()
        console.watch(arb, "arbiter")
        sign_in(arb, base, "dev-arbiter", "#/disputes")
        arb.get_by_text("No open disputes.").wait_for()
        disputed = disputed_order(base, rpc_url, mqtt_url)
        card = arb.locator(f"article[data-order='{disputed}']")
        card.get_by_text("ArrivalProven").wait_for()
        assert card.get_by_text("DisputeOpened").is_visible()
        shot(arb, "disputes")
        card.get_by_label("To the buyer").fill("2000000000")  # 10 % of 20,000 TUSD
        card.get_by_role("button", name="Rule").click()
        arb.get_by_text("No open disputes.").wait_for()
        ruled = httpx.get(
            f"{base}/orders/{disputed}", headers={"X-API-Key": "dev-auditor"}, timeout=10
        ).json()
        assert ruled["state"] == "Resolved"
        assert ruled["settlement"]["buyer_amount"] == "2000000000"
        arb.close()

        # the auditor sees the order, and none of its write actions can be pressed
        audit = ctx.new_page()
        console.watch(audit, "auditor")
        sign_in(audit, base, "dev-auditor", f"#/orders/{order_id}")
        audit.locator("[data-testid=settlement]").wait_for()
        buttons = audit.locator(".actions button")
        assert buttons.count() >= 4
        for i in range(buttons.count()):
            assert buttons.nth(i).is_disabled()
            assert "auditors change nothing" in (buttons.nth(i).get_attribute("title") or "")
        shot(audit, "auditor")
        audit.close()

        # phone width: the shipment view without horizontal overflow
        phone = b.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        mobile = phone.new_page()
        console.watch(mobile, "phone")
        sign_in(mobile, base, "dev-buyer", f"#/orders/{order_id}")
        mobile.locator("[data-testid=settlement]").wait_for()
        mobile.locator("[data-testid=map]").wait_for()
        assert no_overflow(mobile)
        shot(mobile, "shipment-phone")
        mobile.goto(f"{base}/#/orders")  # signed in already (this tab's session)
        mobile.locator("[data-testid=orders-table][data-ready=true]").wait_for()
        assert no_overflow(mobile)
        shot(mobile, "orders-phone")
        phone.close()

        # what the sharing policy answers, shown generically: a 403's message and class in
        # the panel's error state, a response's redactions beside the data, and the
        # health banner for a chain and a broker that are down (answers rewritten in the
        # browser: the page's handling is under test, not the server's), and a chart
        # library the server does not have
        policy = ctx.new_page()
        policy_log = ConsoleLog()
        policy_log.watch(policy, "policy")
        policy.route(f"**/orders/{order_id}/events", answer(403, REFUSED))
        policy.route(f"**/orders/{order_id}/telemetry?*", with_redactions)
        policy.route("**/health", answer(200, DOWN))
        policy.route("**/vendor/uPlot.esm.js", answer(404, {"code": "vendor_missing"}))
        sign_in(policy, base, "dev-buyer", f"#/orders/{order_id}")
        policy.locator(".order-head dl").wait_for()
        assert "48,000 TUSD" in policy.locator(".order-head").inner_text()
        refused = policy.locator("#chain [data-testid=error]")
        refused.wait_for()
        assert "Not shared with you" in refused.inner_text()
        assert REFUSED["message"] in refused.inner_text()
        assert "class location" in refused.inner_text()
        assert "rule cross_jurisdiction_location" in refused.inner_text()
        note = policy.locator("#telemetry [data-testid=policy]")
        note.wait_for()
        assert "latitude_e6: coarsened to 0.1°" in note.inner_text()
        banner = policy.locator("#banner")
        banner.wait_for()
        assert "The chain is down" in banner.inner_text()
        assert "The MQTT broker is down" in banner.inner_text()
        missing = policy.locator("#telemetry .error")  # a server without WEB_VENDOR_DIR
        missing.wait_for()
        assert "chart library (uPlot) is missing" in missing.inner_text()
        shot(policy, "policy-states")
        assert all(("403" in e or "404" in e) for e in policy_log.errors), policy_log.errors
        policy.close()
        page.close()

        across_a_border(b, base, int(order_id), console)
        ctx.close()
    assert console.errors == []


def across_a_border(b: Any, base: str, order_id: int, console: ConsoleLog) -> None:
    """The US auditor on the EU parties' settled order: the state but not the readings
    (403, with the request control), asks; the supplier approves in its grants view; the
    auditor's page reads again and shows the readings with positions coarsened to a region
    and devices as pseudonyms; each release is in the supplier's disclosure log."""
    ctx = b.new_context(viewport={"width": 1280, "height": 900})
    far = ctx.new_page()
    far_log = ConsoleLog()  # the browser logs each refused (403) fetch
    far_log.watch(far, "overseas")
    sign_in(far, base, "dev-overseas-auditor", f"#/orders/{order_id}")
    far.locator(".order-head dl").wait_for()
    head = far.locator(".order-head").inner_text()
    assert "Settled" in head and "withheld by the sharing policy" in head, head
    refused = far.locator("#telemetry [data-testid=error]")
    refused.wait_for()
    assert refused.get_attribute("data-code") == "policy_refused"
    assert "Not shared with you" in refused.inner_text()
    assert "sensitivity medium" in refused.inner_text()
    assert "medium-cross-border-needs-approved-grant" in refused.inner_text()
    assert far.get_by_test_id("request-hint").is_visible()
    access = far.locator("#access")
    access.get_by_test_id("access-refused").wait_for()
    assert unnamed_controls(far) == []
    ask = access.get_by_role("button", name="Request access")
    assert ask.is_enabled()  # auditors may ask: asking changes nothing on chain
    buttons = far.locator(".actions button")
    assert buttons.count() >= 4
    for i in range(buttons.count()):
        assert buttons.nth(i).is_disabled()
    ask.click()  # no reason: said so, nothing sent
    assert "reason is required" in access.get_by_role("alert").inner_text()
    far.get_by_label("Reason for the request").fill("customs audit of the cold chain")
    ask.click()
    mine = access.locator("[data-testid=my-requests] [data-grant][data-state=requested]")
    mine.wait_for()
    grant_id = int(mine.get_attribute("data-grant") or "0")
    assert ask.is_disabled()  # one request pending at a time
    assert unnamed_controls(far) == []

    # the supplier decides in its grants view, from the keyboard
    sup = ctx.new_page()
    console.watch(sup, "supplier")
    sign_in(sup, base, "dev-supplier", "#/grants")
    row = sup.locator(f"[data-testid=grants-pending] tr[data-grant='{grant_id}']")
    row.wait_for()
    text = row.inner_text()
    assert "overseas-auditor" in text and "US" in text and "medium" in text, text
    assert "customs audit of the cold chain" in text
    assert row.get_by_role("button", name="Approve").is_enabled()
    assert unnamed_controls(sup) == []
    shot(sup, "grants")
    row.get_by_role("button", name="Deny").click()  # no reason: refused on the page
    assert "needs a reason" in row.get_by_role("alert").inner_text()
    row.get_by_label("Grant for").select_option("3600")
    row.get_by_label("Grant for").focus()
    sup.keyboard.press("Tab")
    assert sup.evaluate("document.activeElement.textContent") == "Approve"
    sup.keyboard.press("Enter")
    decided = sup.locator(f"[data-testid=grants-decided] tr[data-grant='{grant_id}']")
    decided.wait_for()
    assert decided.get_attribute("data-state") == "approved"
    assert "approved until" in decided.inner_text()
    assert decided.get_by_role("button", name="Revoke").is_enabled()
    assert sup.get_by_test_id("empty-pending").is_visible()

    # the auditor's page sees the approval and reads again: readings, a coarsened map
    far.locator("#telemetry [data-testid=chart] canvas").first.wait_for(timeout=30_000)
    far.get_by_test_id("coarsened").wait_for()
    assert "coarsened to a region" in far.get_by_test_id("coarsened").inner_text()
    assert far.get_by_test_id("map").is_visible()
    devices = far.get_by_test_id("devices").inner_text()
    assert devices.startswith("pseudonym "), devices
    note = far.locator("#telemetry [data-testid=policy]").inner_text()
    assert "latitude_e6: coarsened" in note and f"grant #{grant_id}" in note, note
    assert "48,000 TUSD" in far.locator(".order-head").inner_text()  # the terms, granted
    access.locator(f"[data-grant='{grant_id}'][data-state=approved]").wait_for()
    assert ask.is_disabled()  # approved: nothing more to ask for
    for i in range(buttons.count()):
        assert buttons.nth(i).is_disabled()
    assert unnamed_controls(far) == []
    shot(far, "shipment-coarsened")
    # the map panel alone, for docs/img/ (docs/dashboard.md)
    far.locator("#route").screenshot(path=str(SHOTS / "route-coarsened.png"))
    far.get_by_role("link", name="Orders", exact=True).click()
    listed = far.locator("[data-testid=orders-table][data-ready=true]")
    listed.wait_for()
    # the other order (the disputed one) is not granted: its value withheld
    assert "withheld by the sharing policy" in listed.inner_text()
    assert "48,000 TUSD" in listed.locator(f"tr[data-order='{order_id}']").inner_text()
    far.get_by_role("link", name="Grants", exact=True).click()
    own = far.get_by_test_id("grants-mine")
    own.locator(f"[data-grant='{grant_id}'][data-state=approved]").wait_for()
    assert far.get_by_test_id("empty-pending").is_visible()  # nothing of its own to decide
    assert [e for e in far_log.errors if "403" not in e] == [], far_log.errors
    far.close()

    # an auditor at home sees every grant but decides none: the buttons say why
    audit = ctx.new_page()
    console.watch(audit, "auditor grants")
    sign_in(audit, base, "dev-auditor", "#/grants")
    seen = audit.locator(f"[data-testid=grants-decided] tr[data-grant='{grant_id}']")
    seen.wait_for()
    revoke = seen.get_by_role("button", name="Revoke")
    assert revoke.is_disabled()
    assert "auditors change nothing" in (revoke.get_attribute("title") or "")
    audit.close()

    # the supplier revokes: the auditor is refused again
    decided.get_by_role("button", name="Revoke").click()
    decided_row = f"[data-testid=grants-decided] tr[data-grant='{grant_id}'][data-state=revoked]"
    sup.locator(decided_row).wait_for()
    again = httpx.get(
        f"{base}/orders/{order_id}/telemetry",
        headers={"X-API-Key": "dev-overseas-auditor"},
        timeout=10,
    )
    assert again.status_code == 403 and again.json()["code"] == "policy_refused", again.text
    sup.close()
    ctx.close()

    log = httpx.get(
        f"{base}/disclosures",
        params={"order_id": order_id},
        headers={"X-API-Key": "dev-supplier"},
        timeout=10,
    ).json()
    released = [e for e in log["data"] if e["grant_id"] == grant_id]
    assert released and log["verification"]["ok"] is True, log
    assert {e["viewer_jurisdiction"] for e in released} == {"US"}
    assert "GET /orders/{order_id}/telemetry" in {e["route"] for e in released}


REFUSED = {
    "code": "policy_denied",
    "message": "order events are class 'location' and not shared across jurisdictions",
    "class": "location",
    "rule": "cross_jurisdiction_location",
}
DOWN = {
    "status": "degraded",
    "components": {
        "database": {"status": "ok"},
        "chain": {"status": "down", "detail": "connection refused"},
        "broker": {"status": "down", "detail": "not connected"},
    },
}


def answer(status: int, body: dict[str, Any]) -> Callable[[Any], None]:
    """A Playwright route handler answering ``status`` with the JSON ``body``."""
    return lambda route: route.fulfill(
        status=status, content_type="application/json", body=json.dumps(body)
    )


def with_redactions(route: Any) -> None:
    answer = route.fetch()
    body = answer.json()
    body["redactions"] = [{"field": "latitude_e6", "reason": "coarsened to 0.1°"}]
    route.fulfill(response=answer, body=json.dumps(body))
