"""`cardtune-export` as a script, for a checkout and for `accelerate launch scripts/export.py ...`: the command line
itself is `pipelines/cli/export.py` (see its docstring, or `--help`)."""

from pipelines.cli.export import main

if __name__ == "__main__":
    raise SystemExit(main())
