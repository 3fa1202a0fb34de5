"""The internal executor: a durable run queue (claims, leases, recovery) and the runner that
walks a workflow's graph and records every node."""
