"""The dashboard in a real browser: the journeys people take through it, against a live, simulated cluster.

Debian's chromium, driven by Playwright (tests/browser.py), on a control plane served on
loopback with a SIMULATED compute plane reporting to it, as ``shipyard up`` runs. Each
journey keeps a desktop and a phone-width screenshot of its main page (SHIPYARD_TEST_ARTIFACTS).
Open pages are checked to follow the cluster without reloading: a marker set in the page's
JavaScript before the change must still be there after it.
"""

from __future__ import annotations

import re

import pytest

from tests.browser import (SETTLE_MS, artifacts_dir, expect, live_plane, login, page,  # noqa: F401 - fixtures
                           shot)
from tests.plane import service_spec

pytestmark = pytest.mark.slow

WEB = "/apps/demo/storefront/web"
OK, BAD = re.compile(r"\btone-ok\b"), re.compile(r"\btone-bad\b")
# what an app whose pods crash-loop shows: ArgoCD's Degraded, or the pods' own reason
CRASHING = re.compile(r"^(Degraded|Failing: CrashLoopBackOff)$")
CHANGE_MS = 10_000  # "within a few seconds": the simulation reports, the page polls every 0.25 s


def mark_page(page) -> None:
    """Set a marker only this very document holds: a navigation or reload would lose it."""
    page.evaluate("window.journeyMarker = 'set before the change'")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.journeyMarker") == "set before the change", "the page was reloaded"


def test_overview_and_apps_list_show_the_cluster_connected_and_every_app_healthy(page, live_plane, shot):
    login(page, "admin", live_plane.admin_password)
    expect(page).to_have_url(re.compile(r"/$"))
    card = page.get_by_role("article", name="cluster demo")
    expect(card.locator(".badge")).to_have_text("Connected")
    expect(card.locator(".badge")).to_have_class(OK)
    expect(card.locator(".tag")).to_have_text("simulated")
    expect(card).to_contain_text("1.33")  # the Kubernetes version the simulated agent reports
    # once the simulation settles (the open page follows it): both apps Healthy, on the cluster's card too
    expect(page.locator("#overview-totals .total")).to_have_text(["2 Healthy"], timeout=SETTLE_MS)
    expect(card.locator("dt:text-is('Apps') + dd")).to_have_text("2 Healthy")
    shot.desktop_and_phone(page, "overview")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Apps").click()
    expect(page).to_have_url(re.compile(r"/apps$"))
    rows = page.locator("#apps-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.locator("td:first-child")).to_have_text(["backfill", "web"])
    health = rows.locator("td:nth-child(2) .badge")
    expect(health).to_have_text(["Healthy", "Healthy"])
    for index in range(2):
        expect(health.nth(index)).to_have_class(OK)
    expect(rows.locator("td:nth-child(3) .badge")).to_have_text(["Synced", "Synced"])
    shot.desktop_and_phone(page, "apps")


def test_an_open_app_page_turns_degraded_and_back_without_a_reload(page, live_plane, shot):
    live_plane.wait_healthy("storefront/web")
    login(page, "admin", live_plane.admin_password)
    page.goto(WEB)
    health = page.locator("#app-status .badge.big")
    expect(health).to_have_text("Healthy")
    mark_page(page)

    live_plane.inject("storefront/web", pods="CrashLoopBackOff")
    expect(health).to_have_text(CRASHING, timeout=CHANGE_MS)
    expect(health).to_have_class(BAD)
    expect(page.locator("#app-status .problem")).to_contain_text("CrashLoopBackOff")
    version = page.locator("#app-versions tbody tr").filter(has=page.get_by_role("link", name="v1", exact=True))
    expect(version.locator(".badge")).to_have_text("degraded")
    expect(version.locator(".badge")).to_have_class(BAD)
    expect(version.locator(".reason")).to_contain_text("CrashLoopBackOff")
    pods = page.locator("#app-pods tbody tr")
    expect(pods).to_have_count(2)
    for index in range(2):
        expect(pods.nth(index).locator("td").last).to_contain_text("CrashLoopBackOff")
    backoff = page.locator("#app-events tbody tr").filter(
        has=page.locator("td:nth-child(3)", has_text=re.compile(r"^BackOff$")))
    expect(backoff.first).to_be_visible()
    expect(backoff.first.locator("td:nth-child(2)")).to_have_text("Warning")
    expect(backoff.first).to_contain_text("Back-off restarting failed container")
    assert_not_reloaded(page)
    shot.desktop_and_phone(page, "app-degraded")

    live_plane.clear("storefront/web")
    expect(health).to_have_text("Healthy", timeout=CHANGE_MS)
    expect(health).to_have_class(OK)
    expect(version.locator(".badge")).to_have_text("healthy")
    expect(page.locator("#app-pods")).not_to_contain_text("CrashLoopBackOff")
    expect(page.locator("#app-status .problem")).to_have_count(0)
    assert_not_reloaded(page)


def test_apps_filtered_by_health_show_the_broken_app_and_the_feed_shows_the_change(page, live_plane, shot):
    live_plane.wait_healthy()
    live_plane.inject("storefront/web", pods="CrashLoopBackOff")
    live_plane.wait_until(lambda: live_plane.status("storefront", "web")["health"] == "Degraded", "web Degraded")
    login(page, "admin", live_plane.admin_password)

    page.goto("/apps")
    page.get_by_label("Health").select_option("Degraded")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]health=Degraded"))
    rows = page.locator("#apps-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("td:first-child")).to_have_text("web")
    expect(rows.locator("td:nth-child(2) .badge")).to_have_text(CRASHING)
    expect(rows.locator("td:nth-child(2) .badge")).to_have_class(BAD)
    expect(rows.locator(".reason")).to_contain_text("exceeded its progress deadline")
    expect(page.locator("#apps-table")).to_contain_text("1 app")
    shot.desktop_and_phone(page, "apps-degraded")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
    change = page.locator("#overview-feed tbody tr").filter(has_text="Synced, Degraded")
    expect(change.first.locator("td:nth-child(2) a")).to_have_text("web")
    expect(change.first.locator(".badge")).to_have_text(CRASHING)
    expect(change.first.locator(".badge")).to_have_class(BAD)
    expect(page.locator("#overview-totals .total")).to_have_text(["1 Degraded", "1 Healthy"])
    # the totals link to the apps they count
    page.locator("#overview-totals").get_by_role("link", name="1 Degraded").click()
    expect(page.locator("#apps-table tbody tr td:first-child")).to_have_text(["web"])
    shot.desktop_and_phone(page, "overview-degraded")


def test_the_diff_page_shows_the_changed_image_as_removed_and_added(page, live_plane, shot):
    live_plane.deploy(service_spec("web", image="ghcr.io/acme/web:2.0", extra="replicas: 2\n"))
    login(page, "admin", live_plane.admin_password)
    page.goto(WEB)
    page.get_by_role("button", name="Show the difference").click()
    expect(page).to_have_url(re.compile(r"/apps/demo/storefront/web/diff\?from=1&to=2$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("web: version 1 → 2")
    manifests = page.get_by_label("manifest diff")
    expect(manifests.locator(".del").filter(has_text="image:")).to_have_text(
        re.compile(r"^-\s+image: ghcr\.io/acme/web:1\.0$"))
    expect(manifests.locator(".add").filter(has_text="image:")).to_have_text(
        re.compile(r"^\+\s+image: ghcr\.io/acme/web:2\.0$"))
    spec = page.get_by_label("spec diff")
    expect(spec.locator(".del")).to_contain_text(["ghcr.io/acme/web:1.0"])
    expect(spec.locator(".add")).to_contain_text(["ghcr.io/acme/web:2.0"])
    shot.desktop_and_phone(page, "diff")


def test_a_workspace_viewer_reads_the_app_page_and_is_refused_changes(page, live_plane, shot):
    password = live_plane.add_user("viewer", "workspace-viewer", cluster="demo", workspace="storefront")
    live_plane.wait_healthy("storefront/web")
    login(page, "viewer", password)
    page.goto(WEB)
    expect(page.get_by_role("heading", level=1)).to_contain_text("web")
    expect(page.locator("#app-status .badge.big")).to_have_text("Healthy")
    expect(page.locator("#app-versions tbody tr")).to_have_count(1)
    controls = re.compile(r"deploy|roll ?back|delete|promote|restart", re.IGNORECASE)
    for role in ("button", "link"):
        assert page.get_by_role(role, name=controls).all_inner_texts() == [], role
    shot.desktop_and_phone(page, "app-as-viewer")

    # with the session's own CSRF token, the API still refuses the viewer: it is not allowed, not forged
    answers = page.evaluate("""async (spec) => {
        const csrf = document.querySelector('input[name="csrf_token"]').value;
        const send = async (method, path, body, type) => {
            const response = await fetch(path, {method, body, credentials: "same-origin",
                                                headers: {"X-CSRFToken": csrf, "Content-Type": type}});
            return {status: response.status, body: await response.json()};
        };
        return {
            rollback: await send("POST", "/api/v1/apps/demo/storefront/web/rollback",
                                 JSON.stringify({version: 1}), "application/json"),
            deploy: await send("PUT", "/api/v1/apps", spec, "application/yaml"),
        };
    }""", service_spec("web", image="ghcr.io/acme/web:6.6.6"))
    for name in ("rollback", "deploy"):
        assert answers[name]["status"] == 403, answers
        assert answers[name]["body"]["error"]["code"] == "forbidden", answers
    versions = live_plane.admin.get("/api/v1/apps/demo/storefront/web/versions").get_json()["versions"]
    assert [v["number"] for v in versions] == [1]


def test_a_missing_page_is_an_html_404_in_the_layout(page, live_plane, shot):
    login(page, "admin", live_plane.admin_password)
    for path in ("/apps/demo/storefront/nope", "/no/such/page"):
        response = page.goto(path)
        assert response.status == 404 and response.headers["content-type"].startswith("text/html"), path
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        expect(page.locator(".error-page")).to_contain_text("Error 404.")
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        expect(page.locator(".error-page").get_by_role("link", name="Go to the overview")).to_be_visible()
    page.goto("/apps/demo/storefront/nope")
    shot.desktop_and_phone(page, "not-found")


# --- what people do from the dashboard --------------------------------------------------------------


def version_row(page, number: int):
    return page.locator("#app-versions tbody tr").filter(has=page.get_by_role("link", name=f"v{number}", exact=True))


def test_deploy_a_spec_with_an_error_fix_it_and_watch_it_go_healthy(page, live_plane, shot):
    live_plane.wait_healthy("storefront/web")
    login(page, "admin", live_plane.admin_password)
    page.goto(WEB)
    page.get_by_role("link", name="Deploy a new version").click()
    spec = page.locator("#spec")
    text = spec.input_value()
    assert "ghcr.io/acme/web:1.0" in text  # the newest version's spec, to edit
    result = page.locator("#check-result")
    spec.fill(text.replace("replicas: 2", "replicaz: 2"))
    expect(result).to_contain_text('unknown field "replicaz"')
    expect(result).to_have_class(re.compile(r"\bbad\b"))
    line = result.get_by_role("button", name=re.compile(r"^line \d+, column 1$"))
    expect(line).to_be_visible()
    shot.desktop_and_phone(page, "deploy-problem")
    line.click()  # the problem's line is selected in the spec
    assert page.evaluate("document.activeElement.id") == "spec"

    spec.fill(text.replace("web:1.0", "web:2.0"))
    expect(result).to_contain_text("Valid: demo:storefront/web (updated)")
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page).to_have_url(re.compile(f"{WEB}$"))
    expect(page.locator(".flash")).to_contain_text("version 2")
    mark_page(page)
    expect(version_row(page, 2).locator(".badge")).to_have_text("healthy", timeout=CHANGE_MS)
    expect(page.locator("#app-status .badge.big")).to_have_text("Healthy")
    expect(version_row(page, 2)).to_contain_text("dashboard")  # made from here
    assert_not_reloaded(page)


def test_a_bad_release_its_previous_logs_and_a_rollback_to_healthy(page, live_plane, shot):
    live_plane.wait_healthy("storefront/web")
    live_plane.inject("storefront/web", pods="CrashLoopBackOff", image="ghcr.io/acme/web:9.9")
    live_plane.deploy(service_spec("web", image="ghcr.io/acme/web:9.9", extra="replicas: 2\n"))
    login(page, "admin", live_plane.admin_password)
    page.goto(WEB)
    expect(version_row(page, 2).locator(".badge")).to_have_text("degraded", timeout=CHANGE_MS)
    expect(version_row(page, 2).locator(".reason")).to_contain_text("CrashLoopBackOff")

    page.get_by_role("link", name="Logs").click()
    page.get_by_label("previous container (before its last restart)").check()
    page.get_by_role("button", name="Show logs").click()
    output = page.locator("#logs-output")
    expect(output).to_contain_text("fatal: exiting with status 1", timeout=CHANGE_MS)
    expect(output).to_contain_text("ghcr.io/acme/web:9.9")
    shot.desktop_and_phone(page, "logs-previous")

    page.goto(WEB)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back to version 1").click()
    expect(page.locator(".flash")).to_contain_text("Rolled back to version 1")
    expect(version_row(page, 3).locator(".badge")).to_have_text("healthy", timeout=CHANGE_MS)
    expect(page.locator("#app-status .badge.big")).to_have_text("Healthy")
    expect(page.locator("#app-pods")).not_to_contain_text("CrashLoopBackOff")
    shot.desktop_and_phone(page, "rolled-back")


def test_promote_with_an_override_and_run_a_job_with_a_param_to_succeeded(page, live_plane, shot):
    live_plane.wait_healthy()
    login(page, "admin", live_plane.admin_password)
    page.goto(WEB)
    page.get_by_role("link", name="Promote or clone").click()
    page.get_by_label("Into (cluster:workspace)").fill("demo:data")
    page.get_by_label("Overrides (YAML: spec fields to change)").fill("replicas: 3\n")
    page.get_by_role("button", name="Promote").click()
    expect(page).to_have_url(re.compile(r"/apps/demo/data/web$"))
    expect(page.locator("#app-status .badge.big")).to_have_text("Healthy", timeout=CHANGE_MS)
    expect(page.locator("#app-pods tbody tr")).to_have_count(3)  # the override
    version_row(page, 1).get_by_role("link", name="v1", exact=True).click()
    expect(page.locator("pre.code")).to_contain_text("replicas: 3")
    expect(page.locator("dl.facts")).to_contain_text("promoted from")

    page.goto("/apps/demo/data/backfill")
    page.get_by_role("link", name="Run now").click()
    since = page.get_by_label(re.compile(r"^since"))
    expect(since).to_have_attribute("required", "")
    since.fill("2026-11-01")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page).to_have_url(re.compile(r"/apps/demo/data/backfill#runs-title$"))
    mark_page(page)
    run = page.locator("#app-runs tbody tr").first
    expect(run).to_contain_text("since=2026-11-01")
    expect(run.locator(".badge")).to_have_text("succeeded", timeout=CHANGE_MS)
    expect(run.locator(".badge")).to_have_class(OK)
    assert_not_reloaded(page)
    shot.desktop_and_phone(page, "job-run")
