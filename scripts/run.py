"""`cardtune-train` as a script, for a checkout and for `accelerate launch scripts/run.py ...`: the command line
itself is `pipelines/cli/run.py` (see its docstring, or `--help`)."""

from pipelines.cli.run import main

if __name__ == "__main__":
    raise SystemExit(main())
