"""The web UI in a real browser: log in, upload, ask, follow up, Stop, reload, read, delete.

Headless Debian Chromium driven by Selenium through Debian's chromedriver (nothing is
downloaded). The chat model is the real VllmGenerator when vLLM and its module are installed,
else the word-echoing FakeGenerator (RAG_UI_TEST_GENERATOR=fake forces it); the embedder and
the store are real. The tests run in file order on one page (module fixtures); screenshots
land in test-output/ (ui-answer.png is the README's).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from rag_appliance.app import create_app
from rag_appliance.embedding.encoder import Encoder
from rag_appliance.generation.base import Delta, Generator, GeneratorInfo, Message, SamplingParams
from rag_appliance.services import Services
from rag_appliance.settings import Settings
from rag_appliance.store.qdrant_edge import QdrantEdgeStore
from tests.conftest import free_port, make_services, make_settings
from tests.fakes import FakeGenerator

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"

API_KEY = "e2e-secret-key"
COLLECTION = "e2e-notes"  # also rag.default_collection: preselected before it exists
OTHER_COLLECTION = "e2e-scratch"
FACT_FILE = "quillfeather.txt"
FACT = "The vault access phrase of project Quillfeather is cobalt-otter-42."
OTHER_FILE = "canteen.txt"
OTHER = "The canteen serves mushroom risotto every Thursday from noon until two."
EMPTY_FILE = "blank.txt"
QUESTION = "What is the vault access phrase of project Quillfeather?"
FOLLOW_UP = "Repeat that phrase once more, please."
HELD_QUESTION = "What does the canteen serve on Thursday?"
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


class HeldGenerator:
    """The test's generator behind a gate: while `hold` is set, a stream gets its first delta
    from the engine (so the request is really running) but keeps it back until released,
    which makes "Stop before the first token" deterministic whatever the model's speed."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.hold = threading.Event()
        self.holding = threading.Event()  # a stream is waiting at the gate
        self.closed_early = threading.Event()  # its consumer closed it before the end

    @property
    def info(self) -> GeneratorInfo:
        return self.inner.info  # read through: vLLM fills it in when it starts

    @info.setter
    def info(self, value: GeneratorInfo) -> None:
        self.inner.info = value

    def chat_prompt(self, messages: Sequence[Message]) -> list[int]:
        return self.inner.chat_prompt(messages)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    def stream(
        self, prompt: list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[Delta]:
        deltas = self.inner.stream(prompt, params, request_id)
        return self._held(deltas) if self.hold.is_set() else deltas

    async def _held(self, deltas: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        finished = False
        try:
            first = await anext(deltas)
            self.holding.set()
            # Polled: the test's thread clears it, which an asyncio.Event cannot take.
            while self.hold.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            yield first
            async for delta in deltas:
                yield delta
            finished = True
        finally:
            if not finished:
                self.closed_early.set()
            aclose = getattr(deltas, "aclose", None)
            if aclose is not None:
                await aclose()  # the engine aborts the request


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(make_settings().embedding)


Rig = tuple[str, Services, Generator, HeldGenerator]


@pytest.fixture(scope="module")
def rig(encoder: Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A live server with the UI behind an API key, over a fresh store."""
    root = tmp_path_factory.mktemp("ui")
    generation = {
        "model_cache_dir": OUTPUT / "models",  # the bundled model is prepared once per machine
        "temperature": 0.0,  # the slider's default: a reproducible answer from a real model
        "max_tokens": 64,
    }
    rag = {"top_k": 3, "default_collection": COLLECTION}
    settings = make_settings(server={"api_keys": [API_KEY]}, rag=rag, generation=generation)
    settings = settings.model_copy(update={"data_dir": root / "data"})
    generator = make_generator(settings)
    held = HeldGenerator(generator)
    services = make_services(settings, encoder, QdrantEdgeStore(root / "db"), held)
    # A CPU vLLM engine takes a while to start: longer than tests.conftest.live_server waits.
    with serve(create_app(settings, services), startup_s=600) as url:
        yield url, services, generator, held


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


@pytest.fixture(scope="module")
def page(rig: Rig, browser: Any) -> Any:
    """The browser, signed in to the UI (the tests below share it, in file order)."""
    log_in(browser, rig[0])
    return browser


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


def all_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def text_of(driver: Any, selector: str) -> str:
    return str(css(driver, selector).text)


def line_of(driver: Any, selector: str) -> str:
    """The element's text on one line (inline code and buttons break it into several)."""
    return " ".join(text_of(driver, selector).split())


def shown(driver: Any, selector: str) -> bool:
    """Whether the element is on the page and visible (gradio removes hidden ones)."""
    return any(e.is_displayed() for e in all_css(driver, selector))


def click(driver: Any, selector: str) -> None:
    wait_for(lambda: css(driver, selector).is_displayed(), f"{selector} to show")
    css(driver, selector).click()


def click_tab(driver: Any, label: str) -> None:
    tabs = all_css(driver, "button[role='tab']")
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


def bot_messages(driver: Any) -> list[str]:
    return [str(b.text).strip() for b in all_css(driver, "#chatbot .message.bot")]


def close_toasts(driver: Any) -> None:
    driver.execute_script("document.querySelectorAll('.toast-close').forEach(b => b.click())")
    wait_for(lambda: not all_css(driver, ".toast-item"), "closed toasts")


def no_error_on_page(driver: Any) -> bool:
    """No error badge, toast or message anywhere on the page."""
    body = str(css(driver, "body").text)
    return "Error" not in body and "Traceback" not in driver.page_source


def screenshot(driver: Any, name: str) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    driver.save_screenshot(str(path))
    return path


def log_in(driver: Any, url: str) -> None:
    """Gradio's login page: any user name, an API key as the password."""
    driver.get(f"{url}/ui/")
    user = wait_for(lambda: css(driver, "input[data-testid='textbox']"), "the login page")
    user.send_keys("tester")
    css(driver, "input[type='password']").send_keys(API_KEY)
    css(driver, "button.primary").click()
    wait_for(lambda: css(driver, "#collection"), "the UI after logging in")


def ask(driver: Any, question: str, answers: int) -> str:
    """Send a question; wait until the page shows answer number `answers` complete."""
    set_text(driver, "#question", question, submit=True)
    wait_for(lambda: len(bot_messages(driver)) >= answers, f"answer {answers} to start", 120)
    # The panel's closing line ("Answered: n tokens in s") appears once the stream has ended.
    wait_for(lambda: "Answered:" in text_of(driver, "#sources"), f"answer {answers}", 300)
    return bot_messages(driver)[-1]


def test_upload_ask_and_follow_up(page: Any, rig: Rig, tmp_path: Path) -> None:
    generator = rig[2]
    driver = page
    started = time.monotonic()
    # The served models, and the configured default collection preselected before it exists.
    models = wait_for(lambda: text_of(driver, "#models"), "the models line")
    assert "all-MiniLM-L6-v2" in models and generator.info.model in models
    wait_for(lambda: input_value(driver, "#collection") == COLLECTION, "the default collection")
    assert "does not exist yet" in text_of(driver, "#collection-info")

    set_text(driver, "#new-collection", COLLECTION)
    click(driver, "#create-collection")
    wait_for(lambda: "is empty" in text_of(driver, "#collection-info"), "the empty state")

    # Two good files and an empty one: per-file results, the empty one an error.
    files = {FACT_FILE: FACT, OTHER_FILE: OTHER, EMPTY_FILE: "   \n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    click_tab(driver, "Documents")
    css(driver, "#files input[type='file']").send_keys(
        "\n".join(str(tmp_path / name) for name in files)
    )
    stems = [Path(name).stem for name in files]  # the box splits names into stem and extension
    wait_for(lambda: all(s in text_of(driver, "#files") for s in stems), "the files to upload")
    click(driver, "#index")
    results = wait_for(
        lambda: (t := text_of(driver, "#upload-results")) and "indexed" in t and t,
        "the upload results",
    )
    assert FACT_FILE in results and OTHER_FILE in results and "contains no text" in results
    wait_for(lambda: FACT_FILE in text_of(driver, "#documents"), "the documents table")
    assert "2 documents" in text_of(driver, "#documents-status")
    assert "2 documents, 2 chunks" in text_of(driver, "#collection-info")

    # Ask: the answer streams in, then shows its [n] markers; the cited source is marked.
    click_tab(driver, "Chat")
    answer = ask(driver, QUESTION, 1)
    sources = text_of(driver, "#sources")
    assert FACT_FILE in sources and "cobalt-otter-42" in sources
    if isinstance(generator, FakeGenerator):
        # The fake only echoes; what matters is that retrieval put the fact in its prompt.
        assert "cobalt-otter-42" in generator.decode(generator.prompts[-1])
        assert answer == FAKE_REPLY
    else:
        print(f"vLLM answered: {answer!r}")
        assert "cobalt-otter-42" in answer.lower()
    assert "[1]" in answer
    cited = all_css(driver, "#sources .cited")
    assert cited and FACT_FILE in cited[0].text and "cited" in cited[0].text
    close_toasts(driver)  # created, one file failed: they would cover the header
    screenshot(driver, "ui-answer.png")

    # A follow-up: the conversation goes with it.
    follow = ask(driver, FOLLOW_UP, 2)
    assert follow and QUESTION in text_of(driver, "#chatbot")
    if isinstance(generator, FakeGenerator):
        assert QUESTION in [m.content for m in generator.messages[-1]]
    print(f"follow-up answered: {follow!r}; took {time.monotonic() - started:.1f}s")


def test_a_source_opens_its_document(page: Any) -> None:
    driver = page
    css(driver, f"#sources [data-doc='{FACT_FILE}']").click()
    viewer = wait_for(
        lambda: (t := text_of(driver, "#doc-viewer")) and FACT_FILE in t and t, "the viewer"
    )
    assert FACT in viewer and "1 chunk" in viewer
    assert all_css(driver, "#doc-viewer .chunk.focus")  # the cited chunk is marked
    screenshot(driver, "ui-document.png")
    click_tab(driver, "Chat")


def test_stop_before_the_first_token_keeps_the_conversation(page: Any, rig: Rig) -> None:
    driver = page
    held = rig[3]
    held.hold.set()
    try:
        set_text(driver, "#question", HELD_QUESTION, submit=True)
        wait_for(held.holding.is_set, "the engine's first token (held back)", 120)
        assert HELD_QUESTION in text_of(driver, "#chatbot")  # shown before any answer
        click(driver, "#stop")
        wait_for(lambda: "(stopped)" in bot_messages(driver)[-1], "the stopped note")
        wait_for(held.closed_early.is_set, "the engine's stream to be closed", 30)
    finally:
        held.hold.clear()
    assert "Stopped after" in text_of(driver, "#sources")
    chat = text_of(driver, "#chatbot")
    assert QUESTION in chat and FOLLOW_UP in chat and HELD_QUESTION in chat
    assert len(bot_messages(driver)) == 3
    assert no_error_on_page(driver)
    screenshot(driver, "ui-stopped.png")
    # The next question is answered normally (the stopped turn is not sent to the model).
    assert ask(driver, QUESTION, 4)


def test_reload_restores_collection_and_conversation(page: Any, rig: Rig) -> None:
    url = rig[0]
    driver = page
    before = bot_messages(driver)
    # Another collection, chosen last: the reload must open on it, not on the default.
    set_text(driver, "#new-collection", OTHER_COLLECTION)
    click(driver, "#create-collection")
    wait_for(lambda: input_value(driver, "#collection") == OTHER_COLLECTION, "the new one")
    wait_for(lambda: "is empty" in text_of(driver, "#collection-info"), "its empty state")
    driver.refresh()
    wait_for(lambda: input_value(driver, "#collection") == OTHER_COLLECTION, "the remembered one")
    wait_for(lambda: bot_messages(driver) == before, "the restored conversation")
    assert "(stopped)" in text_of(driver, "#chatbot")

    # Gone meanwhile (deleted over the API): the next load falls back to the default.
    headers = {"Authorization": f"Bearer {API_KEY}"}
    gone = httpx.delete(f"{url}/v1/collections/{OTHER_COLLECTION}", headers=headers, timeout=30)
    assert gone.status_code == 200, gone.text
    driver.refresh()
    wait_for(lambda: input_value(driver, "#collection") == COLLECTION, "the fallback")
    wait_for(lambda: "no longer exists" in text_of(driver, "body"), "the fallback's toast")
    close_toasts(driver)

    # A new browser session (nothing stored) starts with an empty conversation.
    driver.execute_script("window.localStorage.clear()")
    driver.refresh()
    wait_for(lambda: input_value(driver, "#collection") == COLLECTION, "the default again")
    time.sleep(1)  # the restore runs on load: give it the chance to (wrongly) fill the chat
    assert bot_messages(driver) == []


def test_search_tab_matches_the_api(page: Any, rig: Rig) -> None:
    url = rig[0]
    driver = page
    click_tab(driver, "Search")
    query = "vault access phrase"
    set_text(driver, "#search-q", query, submit=True)
    wait_for(lambda: "hits in" in text_of(driver, "#search-summary"), "the search results")
    shown = [(e.get_attribute("data-doc"), e.text) for e in all_css(driver, "#search-results li")]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"collection": COLLECTION, "query": query}
    api = httpx.post(f"{url}/v1/search", json=body, headers=headers, timeout=30).json()
    assert api["mode"] in text_of(driver, "#search-summary")
    assert [doc for doc, _ in shown] == [h["doc_id"] for h in api["data"]]
    for (_, text), hit in zip(shown, api["data"], strict=True):
        assert f"score {hit['score']:.4f}" in text
    screenshot(driver, "ui-search.png")

    # A filter, parsed as the API parses it: only the canteen note is left.
    set_text(driver, "#search-filter", '{"filename": "canteen.txt"}')
    click(driver, "#search-run")
    wait_for(lambda: "1 hit in" in text_of(driver, "#search-summary"), "the filtered results")
    css(driver, f"#search-results [data-doc='{OTHER_FILE}']").click()
    wait_for(lambda: OTHER in text_of(driver, "#doc-viewer"), "the result's document")

    click_tab(driver, "Search")
    set_text(driver, "#search-filter", "{not json")
    click(driver, "#search-run")
    wait_for(lambda: "not valid JSON" in text_of(driver, "#search-summary"), "the JSON error")
    close_toasts(driver)


def test_deleting_asks_first(page: Any) -> None:
    driver = page
    click_tab(driver, "Documents")

    # Click the document's row to pick it, then Delete: a question, nothing deleted yet.
    def fact_cells() -> list[Any]:
        cells = all_css(driver, "#documents span.text")
        return [c for c in cells if c.is_displayed() and c.text.strip() == FACT_FILE]

    wait_for(fact_cells, "the document's row")[0].click()
    wait_for(lambda: input_value(driver, "#doc-pick") == FACT_FILE, "the picked document")
    click(driver, "#delete")
    question = wait_for(lambda: line_of(driver, "#confirm-document"), "the confirmation")
    assert f"Delete document {FACT_FILE}" in question
    row = css(driver, "#confirm-document")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    screenshot(driver, "ui-confirm.png")
    click(driver, "#confirm-document-no")
    wait_for(lambda: not shown(driver, "#confirm-document"), "the question to go")
    assert FACT_FILE in text_of(driver, "#documents")

    click(driver, "#delete")
    click(driver, "#confirm-document-yes")
    wait_for(lambda: FACT_FILE not in text_of(driver, "#documents"), "the deleted document")
    wait_for(lambda: "1 document." in text_of(driver, "#documents-status"), "the new count")
    assert OTHER_FILE in text_of(driver, "#documents")

    # The collection too, after its own question; the default is then missing again.
    click(driver, "#delete-collection")
    question = wait_for(lambda: line_of(driver, "#confirm-collection"), "the question")
    assert f"Delete collection {COLLECTION}" in question and "1 document, 1 chunk" in question
    click(driver, "#confirm-collection-yes")
    wait_for(lambda: "does not exist yet" in text_of(driver, "#collection-info"), "the empty state")
    close_toasts(driver)
    assert no_error_on_page(driver)


def test_ui_requires_an_api_key(rig: Rig) -> None:
    url = rig[0]
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
            # The Chatbot's wire format: content as a list of parts.
            asked = [{"role": "user", "content": [{"type": "text", "text": "Hello?"}]}]
            history, question, panel, *_ = client.predict(
                asked, COLLECTION, False, 3, 0.7, 64, api_name="/chat"
            )
        finally:
            client.close()  # its open event stream would hold up the server's shutdown
        assert history == [] and question == "Hello?"
        assert "chat is not available: the generator is disabled" in panel


def test_a_read_only_team_a_key_in_the_ui(encoder: Encoder, tmp_path: Path) -> None:
    """Signed in with a scoped read-only key (no browser: Gradio's client), each event acts as
    that key, the streamed chat included: team-b is refused, team-a is read, nothing written."""
    gradio_client = pytest.importorskip("gradio_client")
    reader = {"key": "e2e-reader", "role": "read-only", "collections": ["team-a-*"], "name": "ro"}
    settings = make_settings(server={"api_keys": [API_KEY, reader]})
    settings = settings.model_copy(update={"data_dir": tmp_path / "data"})
    generator = FakeGenerator(reply=FAKE_REPLY, max_model_len=2048)
    services = make_services(settings, encoder, QdrantEdgeStore(tmp_path / "db"), generator)
    admin = {"Authorization": f"Bearer {API_KEY}"}
    with serve(create_app(settings, services)) as url:
        for name, text in (("team-a-docs", OTHER), ("team-b", FACT)):
            body = {"collection": name, "texts": [text], "ids": [f"{name}.txt"]}
            assert httpx.post(f"{url}/v1/index", json=body, headers=admin, timeout=60).is_success
        client = gradio_client.Client(f"{url}/ui/", auth=("ro", "e2e-reader"), verbose=False)
        try:
            _, summary = client.predict(
                "team-b", "vault", "default", "", False, 3, api_name="/search"
            )
            hits, found = client.predict(
                "team-a-docs", "canteen", "default", "", False, 3, api_name="/search"
            )
            asked = [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
            refused = client.predict(asked, "team-b", False, 3, 0.0, 64, api_name="/chat")
            answered = client.predict(asked, "team-a-docs", False, 3, 0.0, 64, api_name="/chat")
            client.predict("team-a-new", api_name="/create_collection")
        finally:
            client.close()
        listed = httpx.get(f"{url}/v1/collections", headers=admin, timeout=30).json()
    assert summary.startswith("**Not allowed:**") and "no access to collection" in summary
    assert "team-a-docs.txt" in hits and "1 hit" in found
    assert refused[0] == [] and "no access" in refused[2] and FACT not in str(refused)
    assert len(answered[0]) == 2 and "Answered:" in answered[2]
    assert "cobalt-otter-42" not in generator.decode(generator.prompts[-1])
    assert sorted(c["id"] for c in listed["data"]) == ["team-a-docs", "team-b"]  # none new


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
