"""The benchmarks (run as scripts, e.g. ``.venv/bin/python bench/ingest.py``, or as
modules, ``python -m bench.ingest``); what they share with the tests is in testkit."""
