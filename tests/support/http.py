"""Reading the daemons' /metrics, /healthz and /readyz in tests (plain urllib, as a probe would)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; 4xx/5xx are answers too, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(base_url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``/metrics`` parsed with prometheus-client's own parser: {sample name: [(labels, value)]}."""
    status, body = get(f"{base_url}/metrics")
    assert status == 200, f"/metrics answered {status}: {body}"
    parsed: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            parsed.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return parsed


def value(base_url: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there are none)."""
    return sum(v for sample_labels, v in samples(base_url).get(name, [])
               if all(sample_labels.get(k) == want for k, want in labels.items()))


def family_names(base_url: str) -> set[str]:
    """The metric names ``/metrics`` announces, as a scraper sees them (counters with ``_total``, infos with
    ``_info``), samples or not."""
    status, body = get(f"{base_url}/metrics")
    assert status == 200, f"/metrics answered {status}: {body}"
    suffix = {"counter": "_total", "info": "_info"}
    return {family.name + suffix.get(family.type, "") for family in text_string_to_metric_families(body)}


def bind(port: int) -> socket.socket:
    """Listen on 127.0.0.1:port as a server does (SO_REUSEADDR); raises OSError while the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock
