"""Reusable controls of the Flet app: no services, words passed in."""
