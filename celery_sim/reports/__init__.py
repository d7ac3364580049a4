"""Rendering of results (console, JSON); reads results and timelines, runs nothing."""
