"""Evaluation: SR methods (baselines, generators) measured on benchmark sets, and the evaluate stage."""
