"""The url_dedup phases as runner tasks: map per input shard, reduce per bucket, apply per shard.

map     per document with a URL: its normalised URL (`normalise_url`), id, place in the part (`pos`),
        date (as UTC microseconds) and length, hash-partitioned by URL to
        OUT/url_dedup/_urls/bucket-B/part-N.parquet (the shuffle through storage)
reduce  per bucket: documents grouped by normalised URL; the first in keep order stays, the others are
        written to OUT/url_dedup/_removed/bucket-B.parquet (part, pos, id, duplicate_of, url), sorted
apply   per input shard: its rows of every removed list (a filter on `part`) become rejects with
        reason=duplicate_url, detail=<normalised URL> and duplicate_of=<kept id>; the rest is kept
Memory: a map holds one shard's URLs, a reduce one bucket's (in DuckDB, which spills), an apply one
shard's removed rows.
"""

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import io
from pipelines.documents import STATS_SCHEMA, reject
from pipelines.phase import ShardOutputs, fingerprint_data
from pipelines.shard_task import ApplyTask, Documents, OfShard, ShardTask
from pipelines.stage import Upstream, bucket_name
from pipelines.url_dedup.config import TRACKING_PARAMS, UrlDedupConfig

NAME = "url_dedup"
REASON = "duplicate_url"
MAX_DETAIL_CHARS = 200  # a longer normalised URL is shown as its hash in a reject's detail
DEFAULT_PORTS = {"http": "80", "https": "443"}
URL_SCHEMA = pa.schema([("url", pa.string()), ("id", pa.string()), ("part", pa.string()), ("pos", pa.int64()),
                        ("ts", pa.int64()), ("chars", pa.int64())])
REMOVED_SCHEMA = pa.schema([("part", pa.string()), ("pos", pa.int64()), ("id", pa.string()),
                            ("duplicate_of", pa.string()), ("url", pa.string()), ("group_size", pa.int64())])
KEEP_ORDER = {  # SQL ORDER BY of a URL's documents: the first one is kept
    "newest": "ts DESC NULLS LAST, id, part, pos",
    "longest": "chars DESC, id, part, pos",
    "first_id": "id, part, pos",
}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class TrackingParams:
    """Matches query parameter names (case-insensitive) against names and `prefix*` patterns."""

    def __init__(self, patterns: Iterable[str]):
        patterns = [p.lower() for p in patterns]
        self.names = {p for p in patterns if not p.endswith("*")}
        self.prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))

    def __contains__(self, name: str) -> bool:
        name = name.lower()
        return name in self.names or name.startswith(self.prefixes)


def _split_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):  # IPv6 literal: [::1]:8080
        end = hostport.find("]") + 1 or len(hostport)
        host, rest = hostport[:end], hostport[end:]
        return host, rest[1:] if rest.startswith(":") else ""
    host, _, port = hostport.partition(":")
    return host, port


DEFAULT_TRACKING = TrackingParams(TRACKING_PARAMS)


def normalise_url(url: str | None, ignore_scheme: bool = True,
                  tracking: TrackingParams = DEFAULT_TRACKING) -> str | None:
    """The key two documents share when they are the same page; None for a missing or blank URL.

    Scheme and host lower-cased, the scheme's default port dropped (:80 for http, :443 for https), the
    fragment dropped, trailing slashes of the path dropped (so "/" is the empty path), tracking
    parameters dropped and the others sorted (each kept as written, percent-encoding included). With
    `ignore_scheme`, http and https URLs share the scheme-relative form `//host/path?query`. A URL that
    does not parse is its own key (stripped).
    """
    url = (url or "").strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return url
    scheme = parts.scheme.lower()
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, port = _split_port(hostport)
    if port == DEFAULT_PORTS.get(scheme):
        port = ""
    netloc = f"{userinfo}{at}{host.lower()}{':' + port if port else ''}"
    params = [p for p in parts.query.split("&") if p and unquote_plus(p.split("=", 1)[0]) not in tracking]
    if ignore_scheme and scheme in DEFAULT_PORTS:
        scheme = ""
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "&".join(sorted(params)), "")) or url


def timestamp(date: str | None) -> int | None:
    """An ISO 8601 date (WARC-Date) as UTC microseconds; None when missing or unreadable. A date
    without a time zone is taken as UTC."""
    if not date:
        return None
    try:
        when = dt.datetime.fromisoformat(date.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - EPOCH) // dt.timedelta(microseconds=1)


def bucket_of(url: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big") % buckets


def detail(url: str) -> str:
    if len(url) <= MAX_DETAIL_CHARS:
        return url
    return "sha256:" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def _path(output: str, *parts: str) -> str:
    return io.join(output, NAME, *parts)


@dataclass(frozen=True)
class UrlMapTask(OfShard):
    shard: ShardTask
    cfg: UrlDedupConfig
    upstream: Upstream

    @property
    def marker(self) -> str:
        return _path(self.shard.output, f"_SUCCESS.map.{self.part}")

    def fingerprint(self) -> str:
        keys = {k: v for k, v in fingerprint_data(self.cfg).items() if k != "keep"}  # the reduce's alone
        return io.sha256_json({"upstream": self.upstream.fingerprint, NAME: keys})

    def run(self) -> dict:
        cfg, part = self.cfg, self.part
        tracking = TrackingParams(cfg.tracking_params)
        buckets: list[list[dict]] = [[] for _ in range(cfg.buckets)]
        no_url = 0
        docs = Documents(self.shard, self.upstream.stage, record=True)
        for pos, doc in enumerate(docs):
            url = normalise_url(doc.get("url"), cfg.ignore_scheme, tracking)
            if url is None:
                no_url += 1
                continue
            buckets[bucket_of(url, cfg.buckets)].append({
                "url": url, "id": doc["id"], "part": part, "pos": pos, "ts": timestamp(doc.get("date")),
                "chars": len(doc.get("text") or "")})
        docs.close()
        for b, rows in enumerate(buckets):  # in document order: the same bytes on every run
            path = _path(self.shard.output, "_urls", bucket_name(b), f"{part}.parquet")
            io.write_table_atomic(path, rows, URL_SCHEMA)
        return {"url_dedup_map": {"docs": docs.count, "no_url": no_url}}


def _connect(output: str) -> duckdb.DuckDBPyConnection:

    con = io.duckdb_cursor()
    io.register_filesystem(con, output)
    return con


@dataclass(frozen=True)
class UrlReduceTask:
    """One bucket: depends on every map output (of the parts named, never on stale files of others)."""

    output: str
    cfg: UrlDedupConfig
    maps_fingerprint: str  # of all map tasks together and `keep`
    parts: tuple[str, ...]
    bucket: int
    input_file: str = ""

    @property
    def part(self) -> str:
        return bucket_name(self.bucket)

    @property
    def marker(self) -> str:
        return _path(self.output, f"_SUCCESS.reduce.{self.part}")

    def fingerprint(self) -> str:
        return self.maps_fingerprint

    def run(self) -> dict:
        files = [_path(self.output, "_urls", self.part, f"{p}.parquet") for p in self.parts]
        rows, groups = [], (0, 0, 0)
        if files:
            con = _connect(self.output)
            con.execute(f"CREATE TEMP VIEW urls AS SELECT * FROM read_parquet({io.sql_list(files)})")
            found = con.execute(
                "SELECT part, pos, id, duplicate_of, url, group_size FROM ("
                "  SELECT *, row_number() OVER w AS rank, first_value(id) OVER w AS duplicate_of,"
                "         count(*) OVER (PARTITION BY url) AS group_size"
                f" FROM urls WINDOW w AS (PARTITION BY url ORDER BY {KEEP_ORDER[self.cfg.keep]})"
                ") WHERE rank > 1 ORDER BY part, pos").fetchall()
            rows = [dict(zip(REMOVED_SCHEMA.names, r, strict=True)) for r in found]
            groups = con.execute("SELECT count(*), count(*) FILTER (WHERE n > 1), coalesce(max(n), 0) "
                                 "FROM (SELECT count(*) AS n FROM urls GROUP BY url)").fetchone()
            con.close()  # its temp view goes with it
        io.write_table_atomic(_path(self.output, "_removed", f"{self.part}.parquet"), rows, REMOVED_SCHEMA)
        metrics = {"urls": groups[0], "duplicated_urls": groups[1], "largest_group": groups[2],
                   "duplicates": len(rows)}
        stats = [{"stage": "url_dedup_groups", "part": self.part, "source": None, "input_file": None, "metric": k,
                  "value": float(v)} for k, v in metrics.items()]
        io.write_table_atomic(_path(self.output, "_stats", f"{self.part}.parquet"), stats, STATS_SCHEMA)
        return {"url_dedup_reduce": metrics}


def removed_rows(output: str, buckets: int, part: str) -> dict[int, dict]:
    """pos -> removed row, for one part, from every bucket's removed list."""
    removed = {}
    for b in range(buckets):
        with fsspec.open(_path(output, "_removed", f"{bucket_name(b)}.parquet"), "rb") as fh:
            for row in pq.read_table(fh, filters=[("part", "=", part)]).to_pylist():
                removed[row["pos"]] = row
    return removed


@dataclass(frozen=True)
class UrlApplyTask(ApplyTask):
    stage = NAME

    def run(self) -> dict:
        removed = removed_rows(self.shard.output, self.cfg.buckets, self.part)
        docs = Documents(self.shard, self.upstream.stage)  # a source read twice: its errors were kept by map
        outputs = ShardOutputs(self.shard, NAME, docs.schema())
        pos = no_url = 0
        for batch in docs.batches():
            kept, rejects = [], []
            for doc in batch:
                row = removed.get(pos)
                if row is not None:
                    if row["id"] != doc["id"]:
                        raise RuntimeError(f"{self.part}: document {pos} is {doc['id']!r}, the map saw "
                                           f"{row['id']!r}: the input changed during the run")
                    row = reject(doc, NAME, REASON, detail(row["url"])) | {"duplicate_of": row["duplicate_of"]}
                    rejects.append(row)
                else:
                    no_url += not (doc.get("url") or "").strip()
                    kept.append(doc)
                pos += 1
            outputs.write(docs=kept, rejects=rejects)
        return {NAME: outputs.commit(docs_in=docs.count, no_url=no_url)}
