"""The command lines: `cardtune-train`, `cardtune-predict`, `cardtune-export`, `cardtune-push` once installed;
`scripts/*.py` in a checkout are thin wrappers over these `main` functions (what `accelerate launch` runs)."""
