"""Sweeps: many replicated runs of the model, local or on a Dask cluster, summarised
with confidence intervals, and the search for the smallest setting that meets a target."""
