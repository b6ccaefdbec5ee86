"""Beyond one process: the catalog in shards (:mod:`lite_export.cluster.shards`, no Ray), served
by a Ray Serve application (:mod:`lite_export.cluster.ray_app`, ``lite serve --cluster ray``) and
scored in batch with Ray Data or locally (:mod:`lite_export.cluster.score`, ``lite score``).

Nothing here imports Ray until a Ray path runs; without the ``cluster`` extra those paths say
what to install.
"""

INSTALL_RAY = 'pip install "lite-export[cluster]"  (ray[serve,data]==2.60.0)'
