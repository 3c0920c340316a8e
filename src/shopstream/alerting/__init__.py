"""Alerts: ShopStream's own data alerts (stored, de-duplicated, delivered) and the
Prometheus rules for process and pipeline alerts that Prometheus evaluates."""
