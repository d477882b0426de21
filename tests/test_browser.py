"""The pages in a real browser: Playwright driving Debian's Chromium against the live server.

Screenshots of the main pages are saved in test-artifacts/screenshots/ for a person to look at.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from leaderboard.models import Submission
from leaderboard.services import submission_create
from tests.conftest import baseline_named, succeeded_submission, wait_for
from tests.test_guarded import guarded_benchmark  # noqa: F401 (a fixture)
from tests.environment import PROJECT_DIR

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("HOLDOUT_TEST_ARTIFACTS", PROJECT_DIR / "test-artifacts")) / "screenshots"
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's ORM calls are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def trade_off_board(transactional_db, adult_benchmark, adult_baselines, user):
    """Three submissions that trade accuracy for latency, so weights decide the order."""
    model = baseline_named(adult_baselines, "onnx:")
    succeeded_submission(adult_benchmark, user, model, "majority", {"accuracy": 0.76, "latency_p99_ms": 0.01}, baseline=True)
    succeeded_submission(adult_benchmark, user, model, "accurate-slow", {"accuracy": 0.87, "latency_p99_ms": 9.0}, baseline=True)
    succeeded_submission(adult_benchmark, user, model, "fast", {"accuracy": 0.85, "latency_p99_ms": 0.05})
    return adult_benchmark


def board_names(page) -> list[str]:
    return page.locator("#leaderboard tbody tr td:nth-child(2) a").all_inner_texts()


def test_moving_a_weight_slider_reorders_the_board_without_a_reload(live_server, page, trade_off_board):
    page.goto(f"{live_server.url}/benchmarks/{trade_off_board.slug}/")
    assert board_names(page)[0] == "accurate-slow"
    page.evaluate("window.notReloaded = true")
    slider = page.locator("input[name=w_latency_p99_ms]")
    slider.fill("10")
    slider.dispatch_event("change")
    page.wait_for_function("document.querySelector('#leaderboard tbody tr a').textContent === 'fast'")
    assert page.evaluate("window.notReloaded") is True, "htmx swapped the board in place"
    assert "latency_p99_ms%3A10" in page.url and "weights=" in page.url
    assert page.locator("#trade-offs + figure svg").count() == 1, "the trade-off scatter is drawn"
    screenshot(page, "benchmark")
    # A shared link shows the same board.
    page.goto(page.url)
    assert board_names(page)[0] == "fast"


def test_a_preset_applies_its_weights_and_the_url_holds_them(live_server, page, trade_off_board):
    page.goto(f"{live_server.url}/benchmarks/{trade_off_board.slug}/")
    page.locator("a.preset[data-preset=product-manager]").click()
    page.wait_for_url("**preset=product-manager**")
    page.wait_for_function("document.querySelector('input[name=w_latency_p99_ms]').value === '1'")
    assert page.locator("input[name=w_accuracy]").input_value() == "2"
    assert board_names(page)[0] == "fast"


def test_the_board_fits_a_phone(live_server, browser, trade_off_board):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2)
    page = context.new_page()
    page.goto(f"{live_server.url}/benchmarks/{trade_off_board.slug}/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways scrolling"
    screenshot(page, "benchmark-phone")
    context.close()


def test_the_submission_page_follows_the_evaluation_into_its_results_and_fairness_report(
    live_server, celery_worker, page, user, adult_benchmark, adult_baselines
):
    model = baseline_named(adult_baselines, "skops:Gradient")
    submission, _ = submission_create(
        benchmark=adult_benchmark,
        owner=user,
        name="watched",
        artifact=model.data,
        artifact_filename=model.filename,
        metadata={"git_commit": "0123abc"},
    )
    page.goto(f"{live_server.url}/submissions/{submission.pk}/")
    page.evaluate("window.notReloaded = true")
    assert page.locator("#progress").is_visible() or page.locator("#status").inner_text() == "succeeded"
    page.wait_for_function(
        "document.querySelector('#status').textContent === 'succeeded'", timeout=180_000, polling=500
    )
    assert page.evaluate("window.notReloaded") is True, "the results came in without a full reload"
    assert Submission.objects.get(pk=submission.pk).status == "succeeded"
    for section in ("#charts-fairness", "#charts-interpretability", "#charts-latency"):
        assert page.locator(section).is_visible(), section
    assert page.locator("figure.chart svg").count() >= 4
    assert page.locator("#throughput tbody tr").count() >= 1
    assert "0123abc" in page.locator("#metadata").inner_text()
    screenshot(page, "submission")

    with page.expect_download() as download:
        page.locator("#download-json").click()
    everything = json.loads(Path(download.value.path()).read_text())
    assert set(everything["reports"]) == set(adult_benchmark.evaluators)

    page.locator("a#fairness-report-link").click()
    page.wait_for_url("**/fairness/")
    assert page.locator("h1").inner_text().startswith("Fairness report")
    screenshot(page, "fairness-report")
    with page.expect_download() as download:
        page.locator("a#fairness-json").click()
    report = json.loads(Path(download.value.path()).read_text())
    assert report["submission"]["id"] == str(submission.pk)
    page.emulate_media(media="print")
    assert not page.locator("header.site").is_visible(), "the printed report leaves out the site's header"
    screenshot(page, "fairness-report-print")


def test_home_shows_each_benchmark_with_its_leader(live_server, page, trade_off_board):
    page.goto(f"{live_server.url}/")
    row = page.locator("tbody tr", has_text="Adult")
    assert "accurate-slow" in row.inner_text()
    wait_for(lambda: row.locator("a", has_text="accurate-slow").get_attribute("href"), what="leader link")
    assert "/submissions/" in row.locator("a", has_text="accurate-slow").get_attribute("href")
    screenshot(page, "home")


def test_a_guarded_benchmark_page_before_and_after_closing_at_desktop_and_phone_widths(
    live_server, browser, celery_worker, user, adult_baselines, guarded_benchmark
):
    from django.contrib.auth import get_user_model

    from leaderboard.closing import benchmark_close
    from leaderboard.models import PrivateScore
    from tests.test_evaluation import submit_over_http, wait_until_finished

    benchmark, _, _ = guarded_benchmark
    for fragment in ("onnx:", "skops:"):
        model = baseline_named(adult_baselines, fragment)
        created = submit_over_http(live_server, user, benchmark, model.filename, model.data, name=f"{fragment[:-1]}-model")
        assert wait_until_finished(created["url"])["status"] == "succeeded"

    def look(name: str) -> str:
        texts = []
        for viewport, suffix in (({"width": 1280, "height": 900}, "desktop"), (PHONE, "phone")):
            context = browser.new_context(viewport=viewport)
            page = context.new_page()
            page.goto(f"{live_server.url}/benchmarks/{benchmark.slug}/")
            screenshot(page, f"{name}-{suffix}")
            # Nothing wider than the screen: the boards scroll inside their own boxes.
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"] + 1, suffix
            texts.append(page.locator("body").inner_text())
            context.close()
        return texts[0]

    before = look("guarded-open")
    assert "guarded: scores are computed on 600 public test rows" in before and "Private board" not in before

    staff = get_user_model().objects.create_user("owner", "owner@example.com", "a staff horse battery", is_staff=True)
    _, scores = benchmark_close(benchmark, by=staff)
    assert len(scores) == 1, "one submitter, who chose none: their Ladder's best counts"
    wait_for(lambda: PrivateScore.objects.filter(status="succeeded").count() == 1, timeout=120, what="the private score")
    after = look("guarded-closed")
    assert "Closed at" in after and "private" in after.lower()
