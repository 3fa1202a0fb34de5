"""PostgreSQL notifications: the channel names (:mod:`.channels`) and the per-process hub
that owns the one LISTEN connection (:mod:`.hub`)."""
