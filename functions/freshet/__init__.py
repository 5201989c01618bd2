"""Freshet: a serverless control plane for data pipelines on Google Cloud."""

__version__ = "0.1.0"
