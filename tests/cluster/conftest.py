"""One Ray cluster for every cluster test: a 2-CPU head started once per session (Ray's own advice), as a
`ray.cluster_utils.Cluster` so that tests can add nodes (a logical GPU, a node to remove) and take them away again;
its head also serves Ray Client (`client_address`) for a driver in another process."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def cluster(monkeypatch_session: pytest.MonkeyPatch) -> Iterator[object]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    monkeypatch_session.setenv("RAY_AUTH_MODE", "disabled")  # a test cluster: no token written to ~/.ray
    port = free_port()
    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "ray_client_server_port": port})
    head.client_address = f"ray://127.0.0.1:{port}"
    ray.init(address=head.address)
    yield head
    ray.shutdown()
    head.shutdown()


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch
