"""One Ray cluster for every cluster test: a 2-CPU head started once per session (Ray's own advice), as a
`ray.cluster_utils.Cluster` so that tests can add nodes (a logical GPU, a node to remove) and take them away again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def cluster() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    ray.init(address=head.address)
    yield head
    ray.shutdown()
    head.shutdown()
