# scripts/ holds command-line wrappers run as files (`python scripts/run.py`, `accelerate launch scripts/run.py`);
# it is not a package, so that no generic `scripts` module shadows another project's. Import pipelines.cli instead.
raise ImportError("scripts/ is not an importable package; import pipelines.cli (e.g. pipelines.cli.run) instead")
