"""Performance: ``lite bench`` (latency and throughput over a grid) and ``lite tune`` (serving
settings for a p99 target), in process and over HTTP against real ``lite serve`` processes.

    from lite_export.perf.bench import BenchConfig, run_bench
    from lite_export.perf.tune import TuneConfig, run_tune
    from lite_export.perf.load import ServeProcess, run_load

The HTTP part starts ``lite serve`` (``pip install "lite-export[serve]"``); the plots need
matplotlib (``pip install "lite-export[bench]"``), imported only when used.
"""
