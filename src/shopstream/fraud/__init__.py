"""Fraud and anomaly scoring of orders, inside the batch transaction."""
