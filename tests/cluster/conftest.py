"""One local Ray cluster for the whole test session (bound to 127.0.0.1, usage stats off),
shut down at the end; tests that need it take ``ray_cluster``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from lite_export.cluster.runtime import init_ray

    # every actor asks for no CPU (see lite_export.cluster.ray_app), so 2 cores hold them all
    init_ray(num_cpus=2)
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()
