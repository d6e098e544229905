"""`cardtune-push` as a script, for a checkout and for `accelerate launch scripts/push.py ...`: the command line
itself is `pipelines/cli/push.py` (see its docstring, or `--help`)."""

from pipelines.cli.push import main

if __name__ == "__main__":
    raise SystemExit(main())
