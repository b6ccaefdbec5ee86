"""Connecting to Ray: an existing cluster (``--address``), or a local one bound to loopback.

A local cluster that ``lite serve --cluster ray`` and ``lite score --cluster ray`` start
themselves listens on 127.0.0.1 only: Ray resolves a node address of 127.0.0.1 to the machine's
reachable address and binds its gRPC servers and agents there, unless it is told that this
machine is a single-node setup (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's switch for
local-only nodes, which makes ``127.0.0.1`` the node address). Usage statistics are off and the
dashboard is not started.
"""

from __future__ import annotations

import os

from lite_export.cluster import INSTALL_RAY

#: set in this process (and inherited by every Ray process it starts) before a local start
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def import_ray():
    """``ray``, or an ImportError that says what to install."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"--cluster ray needs Ray: {INSTALL_RAY}") from None
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
    """Join ``address`` (``auto``, ``ray://host:port`` or a GCS ``host:port``), or start a local
    cluster on 127.0.0.1; a no-op when this process is already connected. Returns ``ray``."""
    local = not address
    if local:  # before Ray is imported: it reads the switch at import
        os.environ.update(LOOPBACK_ENV)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    if ray.is_initialized():
        return ray
    options = {"log_to_driver": not quiet, "include_dashboard": False}
    if not local:
        ray.init(address=address, **options)
        return ray
    from ray._private import ray_constants

    # Ray imported before the switch was set (by a library, or a test runner) read it already:
    # the started processes inherit the environment, this one is told directly
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(_node_ip_address="127.0.0.1", num_cpus=num_cpus, **options)
    return ray
