"""Screens pushed over the workbench: help, a run's status, file pickers."""
