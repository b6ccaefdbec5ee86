"""Performance: ``lite bench`` (latency and throughput over a grid) and ``lite tune`` (serving
settings for a p99 target), in process and over HTTP against real ``lite serve`` processes.

    from lite_export.perf.bench import BenchConfig, run_bench
    from lite_export.perf.tune import TuneConfig, run_tune
    from lite_export.perf.load import ServeProcess, run_load

The load generator needs aiohttp (``pip install "lite-export[serve]"``), the plots matplotlib
(``pip install "lite-export[bench]"``); both are imported only when used.
"""
