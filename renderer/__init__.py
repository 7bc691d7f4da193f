"""Lip-sync rendering."""
