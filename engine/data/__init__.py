"""Datasets: reading the files users bring, detecting their format, converting rows for a method."""
