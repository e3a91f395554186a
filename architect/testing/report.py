"""The report of a bot run: its figures, its verdict, as text for people or JSON.

The run fails (exit status 1) on any live update lost or duplicated, any submission
acknowledged but not stored (or stored twice), any worker that could not play the task
through (refused, or failed: each kind of problem is counted and shown), and any error
the daemon logged (in a daemon the run started itself).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from architect.testing.load import COMPLETED, FAILED, REFUSED, WorkerRecord, problem_kind
from architect.testing.verify import Checks

EXAMPLES = 3  # workers named per kind of problem


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def milliseconds(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def build(
    *,
    settings: dict[str, Any],
    records: list[WorkerRecord],
    elapsed: float,
    checks: Checks,
    daemon_errors: list[str] | None,
) -> dict[str, Any]:
    outcomes = Counter(record.outcome for record in records)
    refusals = Counter(record.refusal or "?" for record in records if record.outcome == REFUSED)
    problems: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.outcome != FAILED:
            continue
        kind = problem_kind(record.problem or "?")
        entry = problems.setdefault(kind, {"count": 0, "example": record.problem, "workers": []})
        entry["count"] += 1
        if len(entry["workers"]) < EXAMPLES:
            entry["workers"].append(record.name)
    timings: dict[str, list[float]] = {}
    for record in records:
        for what, seconds in record.timings:
            timings.setdefault(what, []).append(seconds)
    registered = sum(1 for record in records if record.registered)
    live = timings.get("live", []) + timings.get("call", [])
    report: dict[str, Any] = {
        "settings": settings,
        "seconds": round(elapsed, 1),
        "workers": {
            "started": len(records),
            "completed": outcomes[COMPLETED],
            "refused": outcomes[REFUSED],
            "failed": outcomes[FAILED],
        },
        "registrations": {
            "answered": registered,
            "per_second": round(registered / elapsed, 1) if elapsed > 0 else None,
            "p50_ms": milliseconds(percentile(timings.get("register", []), 0.5)),
            "p99_ms": milliseconds(percentile(timings.get("register", []), 0.99)),
        },
        "live_round_trip": {
            "count": len(live),
            "p50_ms": milliseconds(percentile(live, 0.5)),
            "p99_ms": milliseconds(percentile(live, 0.99)),
        },
        "submission_ms": {
            "p50": milliseconds(percentile(timings.get("submit", []), 0.5)),
            "p99": milliseconds(percentile(timings.get("submit", []), 0.99)),
        },
        "disruptions": {
            "drops": sum(1 for record in records if record.disruption == "drop"),
            "reloads": sum(1 for record in records if record.disruption == "reload"),
            "reconnections": sum(record.reconnections for record in records),
            "repeats_dropped": sum(record.repeats for record in records),
        },
        "checks": checks.as_dict(),
        "refusals": dict(refusals.most_common()),
        "problems": dict(sorted(problems.items(), key=lambda item: -item[1]["count"])),
        "daemon_errors": None
        if daemon_errors is None
        else {"count": len(daemon_errors), "first": daemon_errors[:EXAMPLES]},
    }
    report["failures"] = failures(report, checks)
    report["passed"] = not report["failures"]
    return report


def failures(report: dict[str, Any], checks: Checks) -> list[str]:
    """Why the run failed, one line each; none when it passed."""
    found: list[str] = []
    workers = report["workers"]
    if not workers["started"]:
        found.append("no worker ran")
    if checks.unstored:
        found.append(f"{len(checks.unstored)} submissions acknowledged but not stored")
    if checks.stored_twice:
        found.append(f"{len(checks.stored_twice)} submissions stored twice")
    if checks.lost_to_task:
        found.append(f"{len(checks.lost_to_task)} live updates lost on the way to the task")
    if checks.lost_to_pages:
        found.append(f"{len(checks.lost_to_pages)} live updates lost on the way to the pages")
    if checks.duplicated:
        found.append(f"{len(checks.duplicated)} live updates duplicated")
    if workers["refused"]:
        found.append(f"{workers['refused']} workers refused")
    if workers["failed"]:
        found.append(f"{workers['failed']} workers could not play the task through")
    errors = report["daemon_errors"]
    if errors and errors["count"]:
        found.append(f"the daemon logged {errors['count']} errors")
    return found


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def as_text(report: dict[str, Any]) -> str:
    s = report["settings"]
    w = report["workers"]
    r = report["registrations"]
    live = report["live_round_trip"]
    c = report["checks"]
    d = report["disruptions"]
    lines = [
        f"architect bots: {s['config']} against {s['target']}",
        f"  {s['workers']} at once"
        + (f" for {s['duration']:g} s" if s["duration"] else ", once each")
        + f", disconnect rate {s['disconnect_rate']:g}, think {s['think']:g} s:"
        f" {report['seconds']:g} s in all",
        f"workers        {w['started']} started: {w['completed']} completed,"
        f" {w['refused']} refused, {w['failed']} failed",
        f"registrations  {r['answered']} answered, {r['per_second'] or 0:g}/s"
        f" (p50 {_ms(r['p50_ms'])}, p99 {_ms(r['p99_ms'])})",
        f"live           {live['count']} round trips (a send or a call to the update it"
        f" brought): p50 {_ms(live['p50_ms'])}, p99 {_ms(live['p99_ms'])}",
        f"disruptions    {d['drops']} connections dropped, {d['reloads']} pages reloaded;"
        f" {d['reconnections']} reconnections, {d['repeats_dropped']} replayed updates dropped",
    ]
    if c["checked"]:
        lines += [
            f"submissions    {c['submissions_acknowledged']} acknowledged,"
            f" {c['submissions_stored']} of them stored; {c['acknowledged_not_stored']}"
            f" acknowledged but not stored, {c['stored_twice']} stored twice",
            f"live updates   to the task: {c['live_updates_to_task']} sent,"
            f" {c['lost_to_task']} lost; to the pages: {c['live_updates_to_pages']} sent,"
            f" {c['lost_to_pages']} lost; {c['duplicated']} duplicated",
        ]
    else:
        lines.append(f"checks         not made: {c['note']}")
    for what, examples in c["examples"].items():
        if examples:
            lines.append(f"  {what.replace('_', ' ')}: {', '.join(examples)}")
    if report["refusals"]:
        lines.append("refusals")
        lines += [f"  {n:6d}  {reason}" for reason, n in report["refusals"].items()]
    if report["problems"]:
        lines.append("problems")
        for kind, entry in report["problems"].items():
            lines.append(f"  {entry['count']:6d}  {kind}")
            lines.append(f"          e.g. {', '.join(entry['workers'])}: {entry['example']}")
    errors = report["daemon_errors"]
    if errors and errors["count"]:
        lines.append(f"daemon errors  {errors['count']} logged; the first:")
        lines += ["  " + line for first in errors["first"] for line in first.splitlines()[:12]]
    if report["passed"]:
        lines.append("PASSED")
    else:
        lines.append("FAILED: " + "; ".join(report["failures"]))
    return "\n".join(lines) + "\n"
