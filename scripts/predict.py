"""`cardtune-predict` as a script, for a checkout and for `accelerate launch scripts/predict.py ...`: the command line
itself is `pipelines/cli/predict.py` (see its docstring, or `--help`)."""

from pipelines.cli.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
