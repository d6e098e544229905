"""Reports: the output directory, tables, plots, the model card."""
