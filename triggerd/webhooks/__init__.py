"""Webhook ingress: HTTP routes plus the pure pieces (auth, body parsing, dedupe, rate limits)."""
