"""``python -m ml.bench_int8``, kept working: the benchmark lives in :mod:`ml.cli_bench_int8`."""

from ml.cli_bench_int8 import main

if __name__ == "__main__":
    raise SystemExit(main())
