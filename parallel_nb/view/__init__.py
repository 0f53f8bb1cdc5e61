"""Showing runs and results: escaped HTML and text (``html``), DataFrames (``frames``), panels."""
