"""Attacks and outages tried against the real receiver, worker and stores (issue 16)."""
