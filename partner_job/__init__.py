"""Nightly partner export: 30 days of minute energy per sensor out, a usage breakdown back."""
