"""One recipe per method, each composed from the shared steps in :mod:`tailkd.methods.pipeline`."""
