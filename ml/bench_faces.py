"""``python -m ml.bench_faces``, kept working: the benchmark lives in :mod:`ml.cli_bench_faces`."""

from ml.cli_bench_faces import main

if __name__ == "__main__":
    raise SystemExit(main())
