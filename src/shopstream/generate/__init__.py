"""Synthetic shop traffic: a Faker catalog, simulated sessions, injected faults."""
