"""The DataMan teacher: an OpenAI-compatible chat endpoint (vLLM, llama.cpp server, a hosted API)
rates documents. Concurrency is bounded; connection errors, timeouts, 429 and 5xx are retried with
exponential backoff; a malformed answer is asked again, then recorded as a failure; successful
answers are cached in SQLite by (prompt version, model, text). One bad document or a dead endpoint
never raises: each document gets its ratings or an error string.
"""

import hashlib
import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from pydantic import Field
from tqdm import tqdm

from scorers._config import StrictModel
from scorers.dataman.prompt import PROMPT_VERSION, MalformedAnswer, build_messages, parse_answer, truncate_head_tail


class TeacherConfig(StrictModel):
    endpoint: str  # base URL, e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None
    max_concurrency: int = Field(8, ge=1)
    batch_size: int = Field(256, ge=1)  # documents submitted together (bounds queued work and memory)
    timeout_seconds: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_seconds: float = Field(0.5, ge=0)
    reask_on_malformed: int = Field(1, ge=0)
    temperature: float = 0.0
    max_chars: int = Field(6000, ge=100)
    cache_path: str | None = None


class _Retryable(Exception):
    pass


class _Cache:
    def __init__(self, path: str | None):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT)")

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(value)))
            self._db.commit()


class Teacher:
    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        self.cache = _Cache(cfg.cache_path)
        self.requests = 0  # sent to the endpoint (for tests and logs)
        self._count = threading.Lock()

    def _key(self, text: str) -> str:
        material = f"{PROMPT_VERSION}\0{self.cfg.model}\0{truncate_head_tail(text, self.cfg.max_chars)}"
        return hashlib.sha256(material.encode("utf-8", errors="replace")).hexdigest()

    def _post(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature})
        headers = {"Content-Type": "application/json"}
        if self.cfg.api_key:
            headers["Authorization"] = f"Bearer {self.cfg.api_key}"
        request = urllib.request.Request(f"{self.cfg.endpoint.rstrip('/')}/chat/completions", body.encode(), headers)
        with self._count:
            self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout_seconds) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}") from None
            raise ValueError(f"HTTP {exc.code}: {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
        try:
            return payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise MalformedAnswer(f"not a chat completion: {str(payload)[:200]}") from None

    def _ask(self, messages: list[dict]) -> str:
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return self._post(messages)
            except _Retryable as exc:
                if attempt == self.cfg.max_retries:
                    raise ValueError(f"endpoint failed after {attempt + 1} attempts: {exc}") from None
                time.sleep(min(self.cfg.backoff_seconds * 2**attempt, 30.0))
        raise AssertionError("unreachable")

    def _rate_one(self, doc: dict) -> dict:
        result = {"id": doc["id"], "ratings": None, "domain": None, "error": None}
        key = self._key(doc["text"])
        cached = self.cache.get(key)
        if cached is not None:
            return {**result, **cached}
        messages = build_messages(doc["text"], self.cfg.max_chars)
        try:
            for ask in range(self.cfg.reask_on_malformed + 1):
                content = self._ask(messages)
                try:
                    answer = parse_answer(content)
                    self.cache.put(key, answer)
                    return {**result, **answer}
                except MalformedAnswer as exc:
                    if ask == self.cfg.reask_on_malformed:
                        raise ValueError(f"malformed answer after {ask + 1} asks: {exc}") from None
                    messages = messages + [{"role": "assistant", "content": content},
                                           {"role": "user", "content": f"Invalid answer ({exc}). Reply with the "
                                                                       "JSON object only, as specified."}]
        except (ValueError, MalformedAnswer) as exc:
            return {**result, "error": str(exc)}
        return result

    def rate(self, docs: list[dict], progress: bool = False) -> list[dict]:
        """One result per document, in input order: {id, ratings, domain, error}. Requests go out in
        batches of `batch_size`, at most `max_concurrency` at a time; the bar counts rated and failed."""
        results: list[dict] = []
        failed = 0
        with ThreadPoolExecutor(self.cfg.max_concurrency) as pool, \
                tqdm(total=len(docs), desc="teacher", unit="doc", disable=not progress) as bar:
            for start in range(0, len(docs), self.cfg.batch_size):
                for result in pool.map(self._rate_one, docs[start: start + self.cfg.batch_size]):
                    results.append(result)
                    failed += result["error"] is not None
                    bar.update(1)
                    bar.set_postfix(failed=failed, refresh=False)
        return results
