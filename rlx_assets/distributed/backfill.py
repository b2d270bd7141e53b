"""Submit a date range x symbols as a Dagster asset backfill through the webserver's GraphQL API
(what the UI's "Materialize" of several partitions does) and follow it until it ends.

An asset backfill, not a job backfill: Dagster's backfill daemon launches a partition's book step
only once the previous day's `book_state` is materialized, and stops a symbol's later days when
a day fails (a job backfill would launch every day at once). The instance's run queue keeps one
run per symbol at a time (tag `dagster/partition/symbol`) under a global cap.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from rlx_assets.partitions import partition_key

DONE_STATUSES = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCESS_STATUSES = {"COMPLETED", "COMPLETED_SUCCESS"}
RUNNING_RUN_STATUSES = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}

_ASSETS = """
query Assets { assetNodes { assetKey { path } partitionKeysByDimension { name partitionKeys } } }
"""
_LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { partitionKeys }
    ... on Error { message }
  }
}
"""
_STATUS = """
query Backfill($id: String!, $filter: RunsFilter) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on Error { message }
  }
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results { runId status startTime endTime tags { key value } assetSelection { path } }
    }
    ... on Error { message }
  }
}
"""


class BackfillError(Exception):
    """What went wrong, in one line for the user."""


@dataclass
class RunRecord:
    run_id: str
    status: str
    partition: str
    start_time: float | None
    end_time: float | None
    assets: list[str]


@dataclass
class BackfillProgress:
    backfill_id: str
    status: str
    partitions: int
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES and not any(
            run.status in RUNNING_RUN_STATUSES for run in self.runs
        )

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES and all(r.status == "SUCCESS" for r in self.runs)

    def summary(self) -> str:
        counts = Counter(run.status.lower() for run in self.runs)
        runs = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none yet"
        return f"backfill {self.backfill_id}: {self.status.lower()}, runs: {runs}"


class BackfillClient:
    """The webserver's GraphQL endpoint (`<url>/graphql`)."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/") + "/graphql"
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def _query(self, query: str, variables: dict | None = None) -> dict:
        try:
            answer = self._http.post(self.url, json={"query": query, "variables": variables or {}})
        except httpx.HTTPError as error:
            raise BackfillError(
                f"{self.url}: no answer from the Dagster webserver ({error})"
            ) from None
        if answer.status_code != 200:
            raise BackfillError(f"{self.url}: HTTP {answer.status_code} {answer.text[:200]}")
        body = answer.json()
        if body.get("errors"):
            raise BackfillError(f"{self.url}: {body['errors'][0].get('message')}")
        return body["data"]

    def partitioned_assets(self) -> tuple[list[list[str]], dict[str, list[str]]]:
        """(every partitioned asset's key path, the partition keys of each dimension)."""
        nodes = self._query(_ASSETS)["assetNodes"]
        keys, dimensions = [], {}
        for node in nodes:
            if node["partitionKeysByDimension"]:
                keys.append(node["assetKey"]["path"])
                for dimension in node["partitionKeysByDimension"]:
                    dimensions[dimension["name"]] = dimension["partitionKeys"]
        if not keys:
            raise BackfillError(
                f"{self.url}: the webserver's code location has no partitioned asset"
            )
        return keys, dimensions

    def launch(
        self, dates: list[dt.date], symbols: list[str], assets: list[list[str]], title: str
    ) -> str:
        """An asset backfill of `assets` over the days `dates[0]..dates[-1]` of each symbol.

        Sent as one partition range per symbol and asset (`partitionsByAssets`), not as a list
        of partition names: from names, Dagster 1.13 derives the partitions of an asset whose
        parent is in the selection through the dependency, which shifts reconstructed_book (its
        input is the previous day's book_state) by one day from book_state, the other output
        of the same step, and refuses the backfill."""
        ranges = [
            {"start": partition_key(dates[0], symbol), "end": partition_key(dates[-1], symbol)}
            for symbol in symbols
        ]
        params = {
            "partitionsByAssets": [
                {"assetKey": {"path": path}, "partitions": {"ranges": ranges}} for path in assets
            ],
            "title": title,
        }
        answer = self._query(_LAUNCH, {"params": params})["launchPartitionBackfill"]
        if answer["__typename"] == "LaunchBackfillSuccess":
            return answer["backfillId"]
        if answer["__typename"] == "PartitionKeysNotFoundError":
            raise BackfillError(f"partitions not found: {answer['partitionKeys']}")
        raise BackfillError(f"backfill refused: {answer.get('message', answer['__typename'])}")

    def progress(self, backfill_id: str) -> BackfillProgress:
        data = self._query(
            _STATUS,
            {
                "id": backfill_id,
                "filter": {"tags": [{"key": "dagster/backfill", "value": backfill_id}]},
            },
        )
        backfill = data["partitionBackfillOrError"]
        if backfill["__typename"] != "PartitionBackfill":
            raise BackfillError(f"backfill {backfill_id}: {backfill.get('message')}")
        runs = data["runsOrError"]
        if runs["__typename"] != "Runs":
            raise BackfillError(f"runs of backfill {backfill_id}: {runs.get('message')}")
        records = []
        for run in runs["results"]:
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            records.append(
                RunRecord(
                    run_id=run["runId"],
                    status=run["status"],
                    partition=tags.get("dagster/partition", ""),
                    start_time=run["startTime"],
                    end_time=run["endTime"],
                    assets=["/".join(key["path"]) for key in run["assetSelection"] or []],
                )
            )
        records.sort(key=lambda r: (r.start_time or float("inf"), r.run_id))
        return BackfillProgress(backfill_id, backfill["status"], backfill["numPartitions"], records)


def backfill_partitions(
    dates: list[dt.date], symbols: list[str], dimensions: dict[str, list[str]]
) -> list[str]:
    """The partition keys of dates x symbols, each checked against the webserver's partitions
    (one line naming the valid range and the setting to change otherwise)."""
    known_dates, known_symbols = dimensions.get("date", []), dimensions.get("symbol", [])
    for day in dates:
        if day.isoformat() not in known_dates:
            span = f"{known_dates[0]} to {known_dates[-1]}" if known_dates else "none"
            raise BackfillError(
                f"{day} is not a partition of the webserver's assets: days run {span} "
                "(RLX_START_DATE sets the first, where the webserver runs)"
            )
    for symbol in symbols:
        if symbol not in known_symbols:
            raise BackfillError(
                f"{symbol} is not a partition of the webserver's assets: symbols are "
                f"{known_symbols} (RLX_SYMBOLS, where the webserver runs)"
            )
    return [partition_key(day, symbol) for symbol in symbols for day in dates]


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def follow(
    client: BackfillClient,
    backfill_id: str,
    report: Callable[[BackfillProgress], None],
    poll_s: float = 2.0,
    timeout_s: float | None = None,
) -> BackfillProgress:
    """Poll until the backfill and all its runs have ended; `report` each change."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    while True:
        progress = client.progress(backfill_id)
        if progress.summary() != last:
            last = progress.summary()
            report(progress)
        if progress.done:
            return progress
        if deadline is not None and time.monotonic() > deadline:
            raise BackfillError(f"{progress.summary()}: not done after {timeout_s:.0f} s")
        time.sleep(poll_s)
