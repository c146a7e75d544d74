"""The web UI in a real browser: log in, upload, ask, see the sources, delete.

Headless Debian Chromium driven by Selenium through Debian's chromedriver (nothing is
downloaded). The chat model is the real VllmGenerator when vLLM and its module are installed,
else the word-echoing FakeGenerator (RAG_UI_TEST_GENERATOR=fake forces it); the embedder and
the store are real. The screenshot of the answer with its sources: test-output/ui-answer.png.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from rag_appliance.app import create_app
from rag_appliance.embedding.encoder import Encoder
from rag_appliance.generation.base import Generator
from rag_appliance.services import Services
from rag_appliance.settings import Settings
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import free_port, make_services, make_settings
from tests.fakes import FakeGenerator

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
SCREENSHOT = OUTPUT / "ui-answer.png"

API_KEY = "e2e-secret-key"
COLLECTION = "e2e-notes"
FACT_FILE = "quillfeather.txt"
FACT = "The vault access phrase of project Quillfeather is cobalt-otter-42."
OTHER_FILE = "canteen.txt"
OTHER = "The canteen serves mushroom risotto every Thursday from noon until two."
EMPTY_FILE = "blank.txt"
QUESTION = "What is the vault access phrase of project Quillfeather?"
FAKE_REPLY = "(A canned reply from the test's fake generator.) The phrase is in source [1]."

# Chromium as a quiet, offline test browser: no GPU, no update or sync traffic.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1500,1100",
]


def use_vllm() -> bool:
    """The real generator when vLLM and the appliance's vLLM module are both installed."""
    if os.environ.get("RAG_UI_TEST_GENERATOR") == "fake":
        return False
    return (
        importlib.util.find_spec("vllm") is not None
        and importlib.util.find_spec("rag_appliance.generation.vllm_engine") is not None
    )


def make_generator(settings: Settings) -> Generator:
    """VllmGenerator (when available) or FakeGenerator."""
    if use_vllm():
        from rag_appliance.generation.vllm_engine import VllmGenerator

        return VllmGenerator(settings.generation, settings.data_dir, embedder_gpu_bytes=0)
    return FakeGenerator(reply=FAKE_REPLY, max_model_len=2048)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(make_settings().embedding)


@pytest.fixture(scope="module")
def rig(
    encoder: Encoder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Services, Generator]]:
    """A live server with the UI behind an API key, over a fresh store."""
    root = tmp_path_factory.mktemp("ui")
    generation = {
        "model_cache_dir": OUTPUT / "models",  # the bundled model is prepared once per machine
        "temperature": 0.0,  # the slider's default: a reproducible answer from a real model
        "max_tokens": 64,
    }
    settings = make_settings(
        server={"api_keys": [API_KEY]}, rag={"top_k": 3}, generation=generation
    )
    settings = settings.model_copy(update={"data_dir": root / "data"})
    generator = make_generator(settings)
    services = make_services(settings, encoder, QdrantEdgeStore(root / "db"), generator)
    # A CPU vLLM engine takes a while to start: longer than tests.conftest.live_server waits.
    with serve(create_app(settings, services), startup_s=600) as url:
        yield url, services, generator


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (/usr/bin/chromium)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll until check() returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # elements re-render while gradio updates them
            last = exc
        time.sleep(0.2)
    detail = f" (last error: {last})" if last else ""
    raise AssertionError(f"timed out waiting for {what}{detail}")


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def text_of(driver: Any, selector: str) -> str:
    return str(css(driver, selector).text)


def click_tab(driver: Any, label: str) -> None:
    from selenium.webdriver.common.by import By

    tabs = driver.find_elements(By.CSS_SELECTOR, "button[role='tab']")
    next(t for t in tabs if t.text.strip() == label).click()


def set_text(driver: Any, selector: str, value: str, submit: bool = False) -> None:
    """Type into a gradio textbox or dropdown (its <input> or <textarea>)."""
    from selenium.webdriver.common.keys import Keys

    field = css(driver, f"{selector} input, {selector} textarea")
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(value)
    if submit:
        field.send_keys(Keys.ENTER)


def input_value(driver: Any, selector: str) -> str:
    return str(css(driver, f"{selector} input").get_attribute("value"))


def answer_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    bots = driver.find_elements(By.CSS_SELECTOR, "#chatbot .message.bot, #chatbot .bot")
    return str(bots[-1].text).strip() if bots else ""


def log_in(driver: Any, url: str) -> None:
    """Gradio's login page: any user name, an API key as the password."""
    driver.get(f"{url}/ui/")
    user = wait_for(lambda: css(driver, "input[data-testid='textbox']"), "the login page")
    user.send_keys("tester")
    css(driver, "input[type='password']").send_keys(API_KEY)
    css(driver, "button.primary").click()
    wait_for(lambda: css(driver, "#collection"), "the UI after logging in")


def test_upload_ask_sources_delete(
    rig: tuple[str, Services, Generator], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    url, _, generator = rig
    driver = browser
    started = time.monotonic()
    log_in(driver, url)

    # Create the collection from the UI; it becomes the selected one.
    set_text(driver, "#new-collection", COLLECTION)
    css(driver, "#create-collection").click()
    wait_for(lambda: input_value(driver, "#collection") == COLLECTION, "the new collection")

    # Upload two good files and an empty one: per-file results, the empty one an error.
    files = {FACT_FILE: FACT, OTHER_FILE: OTHER, EMPTY_FILE: "   \n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    click_tab(driver, "Documents")
    upload = css(driver, "#files input[type='file']")
    upload.send_keys("\n".join(str(tmp_path / name) for name in files))
    # The upload box shows each name split into stem and extension.
    stems = [Path(name).stem for name in files]
    wait_for(lambda: all(s in text_of(driver, "#files") for s in stems), "the files to upload")
    css(driver, "#index").click()
    results = wait_for(
        lambda: (t := text_of(driver, "#upload-results")) and "indexed" in t and t,
        "the upload results",
    )
    assert FACT_FILE in results and OTHER_FILE in results and "error" in results
    assert "contains no text" in results  # the parser's message for the blank file
    wait_for(lambda: FACT_FILE in text_of(driver, "#documents"), "the documents table")
    assert "2 documents" in text_of(driver, "#documents-status")

    # Ask; the answer streams in and the sources name the uploaded file first.
    click_tab(driver, "Chat")
    set_text(driver, "#question", QUESTION, submit=True)
    wait_for(lambda: FACT_FILE in text_of(driver, "#sources"), "the sources panel", 120)
    # The panel's closing line ("Answered: n tokens in s") appears once the stream has ended.
    wait_for(lambda: "Answered:" in text_of(driver, "#sources"), "the streamed answer", 300)
    answer = answer_text(driver)
    sources = text_of(driver, "#sources")
    assert sources.index(FACT_FILE) < sources.index(OTHER_FILE) if OTHER_FILE in sources else True
    assert "cobalt-otter-42" in sources
    if isinstance(generator, FakeGenerator):
        # The fake only echoes; what matters is that retrieval put the fact in its prompt.
        assert "cobalt-otter-42" in generator.decode(generator.prompts[-1])
        assert answer == FAKE_REPLY
    else:
        print(f"vLLM answered: {answer!r}")
        assert "cobalt-otter-42" in answer.lower()
    # Close the earlier toasts (created, one file failed) so they do not cover the header.
    driver.execute_script("document.querySelectorAll('.toast-close').forEach(b => b.click())")
    wait_for(lambda: not driver.find_elements(By.CSS_SELECTOR, ".toast-item"), "closed toasts")
    OUTPUT.mkdir(exist_ok=True)
    driver.save_screenshot(str(SCREENSHOT))

    # A missing collection is a readable error, and the question comes back to be re-sent.
    set_text(driver, "#collection", "no-such-notes", submit=True)
    set_text(driver, "#question", "Anything there?", submit=True)
    wait_for(
        lambda: "collection 'no-such-notes' does not exist" in text_of(driver, "#sources"),
        "the missing-collection error",
    )
    wait_for(lambda: "Traceback" not in driver.page_source, "no stack trace")
    assert css(driver, "#question textarea").get_attribute("value") == "Anything there?"
    set_text(driver, "#collection", COLLECTION, submit=True)

    # Delete the fact's document; it leaves the table and the count drops.
    click_tab(driver, "Documents")
    set_text(driver, "#doc-pick", FACT_FILE, submit=True)
    css(driver, "#delete").click()
    wait_for(lambda: FACT_FILE not in text_of(driver, "#documents"), "the deleted document")
    wait_for(lambda: "1 document." in text_of(driver, "#documents-status"), "the new count")
    assert OTHER_FILE in text_of(driver, "#documents")
    print(f"browser flow took {time.monotonic() - started:.1f}s; screenshot: {SCREENSHOT}")


def test_ui_requires_an_api_key(rig: tuple[str, Services, Generator]) -> None:
    url, _, _ = rig
    with httpx.Client(base_url=f"{url}/ui", timeout=30) as client:
        assert client.get("/gradio_api/login_check").status_code == 401
        wrong = client.post("/login", data={"username": "a", "password": "nope"})
        assert wrong.status_code == 400
        right = client.post("/login", data={"username": "a", "password": API_KEY})
        assert right.status_code == 200
        assert client.get("/gradio_api/login_check").status_code == 200
    # The API keeps its own bearer-key check.
    assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 401


def test_ui_with_services_built_at_startup(tmp_path: Path) -> None:
    """create_app without services: the UI's handlers find the ones the lifespan builds."""
    gradio_client = pytest.importorskip("gradio_client")
    settings = make_settings(generation={"enabled": False})
    settings = settings.model_copy(update={"data_dir": tmp_path / "data"})
    with serve(create_app(settings)) as url:
        client = gradio_client.Client(f"{url}/ui/", verbose=False)
        try:
            client.predict(COLLECTION, api_name="/create_collection")
            assert COLLECTION in str(client.predict(None, api_name="/refresh_collections"))
            # No generator here: chat answers with the reason, not an error page.
            history, question, panel = client.predict(
                "Hello?", [], COLLECTION, False, 3, 0.7, api_name="/chat"
            )
        finally:
            client.close()  # its open event stream would hold up the server's shutdown
        assert history == [] and question == "Hello?"
        assert "chat is not available: the generator is disabled" in panel


@contextmanager
def serve(app: Any, startup_s: float = 120) -> Iterator[str]:
    """Run an app under uvicorn in a thread (tests.conftest.live_server always brings services)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), "the server to start", startup_s)
    assert thread.is_alive(), "the server exited at startup"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
