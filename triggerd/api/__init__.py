"""HTTP surface apart from webhooks: health, readiness, metrics, the admin API."""
