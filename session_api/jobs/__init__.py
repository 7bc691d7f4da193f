"""Offline jobs: the database queue and the worker that renders them."""
