"""The DataMan teacher: an OpenAI-compatible chat endpoint (vLLM, llama.cpp server, a hosted API)
rates documents. Concurrency is bounded; connection errors, timeouts, 429 and 5xx are retried with
exponential backoff; a malformed answer is asked again, then recorded as a failure; successful
answers are cached in SQLite by (prompt version, model, text). One bad document or a dead endpoint
never raises: each document gets its ratings or an error string.

The endpoint must be http(s). The key is read from the environment variable named by `api_key_env`,
never from the spec, and goes only into the Authorization header of requests to the endpoint itself:
redirects are never followed (a 3xx is an error for that document, not retried), so the key cannot
be forwarded to another host; it is masked in any error text that would echo it.
"""

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator
from tqdm import tqdm

from scorers._config import StrictModel
from scorers.dataman.prompt import PROMPT_VERSION, MalformedAnswer, build_messages, parse_answer, truncate_head_tail


class TeacherConfig(StrictModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # a misplaced key must not be echoed in errors

    endpoint: str  # base URL, e.g. http://127.0.0.1:8000/v1 (http or https only)
    model: str
    api_key_env: str | None = None  # the NAME of the environment variable holding the key, e.g. OPENAI_API_KEY
    max_concurrency: int = Field(8, ge=1)
    batch_size: int = Field(256, ge=1)  # documents submitted together (bounds queued work and memory)
    timeout_seconds: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_seconds: float = Field(0.5, ge=0)
    reask_on_malformed: int = Field(1, ge=0)
    temperature: float = 0.0
    max_chars: int = Field(6000, ge=100)
    cache_path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_spec(cls, raw):
        if isinstance(raw, dict) and "api_key" in raw:
            raise ValueError("`api_key` is not accepted: a key does not belong in a spec. Put it in an environment "
                             "variable and name that variable with `api_key_env` (e.g. api_key_env: OPENAI_API_KEY)")
        return raw

    @field_validator("endpoint")
    @classmethod
    def _http_endpoint(cls, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host (got scheme {parts.scheme!r}), "
                             "e.g. http://127.0.0.1:8000/v1")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (user:password@); name the key's environment variable "
                             "with `api_key_env`")
        if parts.query or parts.fragment or endpoint.endswith(("?", "#")):
            raise ValueError("must be a base URL without ?query or #fragment (/chat/completions is appended to it)")
        return endpoint

    @field_validator("api_key_env")
    @classmethod
    def _key_in_environment(cls, name: str | None) -> str | None:
        if name is None:
            return None
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):  # never echo it: it may be a key pasted by mistake
            raise ValueError("must be the name of an environment variable (upper case letters, digits and _, "
                             "e.g. OPENAI_API_KEY), not the key itself")
        if not os.environ.get(name):
            raise ValueError(f"environment variable {name} is not set (or is empty); export the endpoint's key "
                             "in it before running")
        return name


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


def _opener() -> urllib.request.OpenerDirector:
    """http(s) only, and no HTTPRedirectHandler: a 3xx reaches the caller as an HTTPError, so the
    Authorization header is never re-sent to wherever a Location points."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(),
                    urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


class Teacher:
    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        self._api_key = None  # kept here, never in cfg (which may be dumped or logged)
        if cfg.api_key_env:
            self._api_key = os.environ.get(cfg.api_key_env)
            if not self._api_key:
                raise ValueError(f"teacher.api_key_env: environment variable {cfg.api_key_env} is not set "
                                 "(or is empty)")
        self._opener = _opener()
        self.cache = _Cache(cfg.cache_path)
        self.requests = 0  # sent to the endpoint (for tests and logs)
        self._count = threading.Lock()

    def _key(self, text: str) -> str:
        material = f"{PROMPT_VERSION}\0{self.cfg.model}\0{truncate_head_tail(text, self.cfg.max_chars)}"
        return hashlib.sha256(material.encode("utf-8", errors="replace")).hexdigest()

    def _post(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature})
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(f"{self.cfg.endpoint.rstrip('/')}/chat/completions", body.encode(), headers)
        with self._count:
            self.requests += 1
        try:
            with self._opener.open(request, timeout=self.cfg.timeout_seconds) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                target = urlsplit(exc.headers.get("Location") or "")
                where = f" to {target.scheme}://{target.netloc}" if target.netloc else ""
                raise ValueError(f"HTTP {exc.code}: the endpoint redirects{where}; redirects are not followed "
                                 "(the key would go with them): set teacher.endpoint to the final URL") from None
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
            return {**result, "error": self._mask(str(exc))}
        return result

    def _mask(self, text: str) -> str:
        """An endpoint may echo the key in an answer or error; it must not reach labels or logs."""
        return text.replace(self._api_key, "***") if self._api_key else text

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
