"""Scoring models: metrics, and (with the training pipeline) evaluation runs and reports."""
