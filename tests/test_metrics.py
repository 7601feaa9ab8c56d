"""Prometheus metrics of a real ``hfgit serve --workers 2 --metrics-bind``, scraped after
real git pushes and clones, API calls and bad tokens.

The counters must add up across both worker processes (prometheus_client's multiprocess
files, summed by the listener in the gunicorn master), the listener is the only place
they are served, and no label ever holds a token, a name or a path.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hubtest import Git, Hub, MakeHub, Postgres, free_port, http_request, run_cli, unique

Samples = dict[tuple[str, frozenset], float]


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def until(get, done):
    """``get()`` once ``done`` holds of it (or the last try after 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        got = get()
        if done(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def settled(url: str, done) -> tuple[str, Samples]:
    """A scrape once ``done(samples)`` holds: a request is counted when the server closes
    its answer, just after the client has read it."""
    return until(lambda: scrape(url), lambda scraped: done(scraped[1]))


def pids_serving(hub: Hub, path: str) -> Counter:
    """How many requests for ``path`` each worker logged (the JSON access lines)."""
    assert hub.log is not None
    pids: Counter = Counter()
    for line in hub.log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("path") == path and "route" in entry:
                pids[entry["pid"]] += 1
    return pids


@pytest.fixture
def metered(make_hub: MakeHub) -> tuple[Hub, str]:
    port = free_port()
    hub = make_hub(
        workers=2, extra_args=["--metrics-bind", f"127.0.0.1:{port}", "--log-format", "json"]
    )
    return hub, f"http://127.0.0.1:{port}/metrics"


def test_metrics_add_up_across_workers(metered: tuple[Hub, str], git: Git, tmp_path: Path):
    hub, metrics_url = metered
    # wait_healthy's one successful check, counted before anything of ours.
    _, before = settled(
        metrics_url, lambda s: value(s, "hfgit_requests_total", surface="site", status="200")
    )
    user = hub.make_user()
    token = hub.make_token(user)
    rid = hub.make_repo(f"{user}/{unique('r')}", private=True)
    work = git.init_worktree(tmp_path / "w", {"data.txt": secrets.token_hex(4000)})
    git.run("push", "-q", hub.repo_url(rid), "main", cwd=work, token=token)
    git.run("clone", "-q", hub.repo_url(rid), str(tmp_path / "clone"), token=token)
    assert http_request("GET", f"{hub.url}/api/whoami-v2", token=token, bearer=True)[0] == 200
    bad = {
        "password": "correct horse battery",
        "org_token": "api_org_" + "Q" * 34,
        "invalid": "hf_" + "Q" * 34,
    }
    for secret in bad.values():
        status, _, _ = http_request("GET", f"{hub.url}/api/whoami-v2", token=secret, bearer=True)
        assert status == 401
    assert http_request("GET", f"{hub.url}/metrics")[0] == 404

    # Health checks on fresh connections until both workers have answered some.
    sent = 0
    while len(pids_serving(hub, "/healthz")) < 2 or sent < 20:
        assert sent < 400, "one worker answered every request"
        assert http_request("GET", f"{hub.url}/healthz")[0] == 200
        sent += 1
    deadline = time.monotonic() + 10
    while sum(pids_serving(hub, "/healthz").values()) < sent + 1 and time.monotonic() < deadline:
        time.sleep(0.1)  # the access line is written just after the answer

    text, after = settled(
        metrics_url,
        lambda s: (
            delta(before, s, "hfgit_requests_total", surface="site", status="200") >= sent
            and delta(before, s, "hfgit_requests_total", surface="site", status="404") >= 1
        ),
    )
    assert delta(before, after, "hfgit_requests_total", surface="site", status="200") == sent
    assert delta(before, after, "hfgit_requests_total", surface="site", status="404") == 1
    assert delta(before, after, "hfgit_requests_total", surface="api", status="200") == 1
    assert delta(before, after, "hfgit_requests_total", surface="api", status="401") == 3
    for reason in bad:
        assert delta(before, after, "hfgit_auth_failures_total", reason=reason) == 1
    assert delta(before, after, "hfgit_pushes_landed_total") == 1
    assert delta(before, after, "hfgit_push_refs_updated_total") == 1
    pushes = delta(before, after, "hfgit_pushes_total", status="200")
    assert pushes >= 1
    assert delta(before, after, "hfgit_push_duration_seconds_count") == pushes
    assert delta(before, after, "hfgit_pack_generation_seconds_count") >= 1
    git_requests = sum(
        delta(before, after, "hfgit_requests_total", surface="git", status=status)
        for status in ("200", "401")
    )
    assert git_requests >= 4  # info/refs and a POST, for the push and for the clone
    assert delta(before, after, "hfgit_request_duration_seconds_count", surface="git") == (
        git_requests
    )
    assert delta(before, after, "hfgit_received_bytes_total", surface="git") > 1000
    assert delta(before, after, "hfgit_sent_bytes_total", surface="git") > 1000
    assert delta(before, after, "hfgit_sent_bytes_total", surface="site") >= 3 * sent

    # Bounded labels only: no token, no user or repository name, no path.
    names = set()
    for _name, labels in after:
        names.update(label for label, _ in labels)
    assert names <= {"surface", "status", "reason", "le"}
    leaked = [s for s in (token, *bad.values()) if s in text]
    assert not leaked, "a secret appeared in the scrape"
    assert "hf_" not in text and user not in text and rid.name not in text


def workers_of(hub: Hub) -> set[int]:
    assert hub.process is not None
    pids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"PPid:\t{hub.process.pid}\n" in status.read_text():
                pids.add(int(status.parent.name))
        except OSError:
            continue
    return pids


def test_counts_survive_a_worker_killed(metered: tuple[Hub, str]) -> None:
    hub, metrics_url = metered
    for _ in range(10):
        assert http_request("GET", f"{hub.url}/healthz")[0] == 200
    _, before = settled(
        metrics_url, lambda s: value(s, "hfgit_requests_total", surface="site", status="200") > 10
    )
    counted = value(before, "hfgit_requests_total", surface="site", status="200")
    assert counted == 11  # wait_healthy's and ours
    until(lambda: workers_of(hub), lambda pids: len(pids) == 2)
    # A worker that answered some of them, so its counts are the ones that must stay.
    victim = until(lambda: pids_serving(hub, "/healthz"), bool).most_common(1)[0][0]
    os.kill(victim, signal.SIGKILL)
    now = until(lambda: workers_of(hub), lambda pids: victim not in pids and len(pids) == 2)
    assert victim not in now and len(now) == 2
    assert http_request("GET", f"{hub.url}/healthz")[0] == 200
    _, after = settled(
        metrics_url,
        lambda s: value(s, "hfgit_requests_total", surface="site", status="200") > counted,
    )
    # The dead worker's requests are still in the sum, and the new worker's are added.
    assert value(after, "hfgit_requests_total", surface="site", status="200") == counted + 1


def test_no_metrics_on_the_main_port(hub: Hub) -> None:
    status, _, body = http_request("GET", f"{hub.url}/metrics")
    assert status == 404 and b"hfgit_" not in body


def test_metrics_bind_must_be_host_and_port(tmp_path: Path) -> None:
    result = run_cli(
        "serve", "--data-dir", str(tmp_path / "d"), "--metrics-bind", "9100", check=False
    )
    assert result.returncode == 1
    assert "--metrics-bind wants HOST:PORT" in result.stderr


def test_metrics_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            str(free_port()),
            "--metrics-bind",
            f"127.0.0.1:{port}",
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_database_outage_is_counted(postgres: Postgres, make_hub: MakeHub) -> None:
    port = free_port()
    hub = make_hub(
        database_url=postgres.url, workers=1, extra_args=["--metrics-bind", f"127.0.0.1:{port}"]
    )
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    user = hub.make_user()
    token = hub.make_token(user)
    _, before = scrape(metrics_url)
    postgres.stop()
    try:
        status, _, _ = http_request("GET", f"{hub.url}/api/whoami-v2", token=token, bearer=True)
        assert status == 503
    finally:
        postgres.start()
    _, after = settled(metrics_url, lambda s: delta(before, s, "hfgit_database_errors_total") > 0)
    assert delta(before, after, "hfgit_database_errors_total") == 1
    assert delta(before, after, "hfgit_requests_total", surface="api", status="503") == 1
