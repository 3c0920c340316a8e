"""The REST API and the dashboard's server (``shopstream serve``)."""
