"""Serving HTTP beside the webhook code: the listening socket, the extra HTTP processes
([http] processes > 1) and the forwarding of requests from them to the main process."""
