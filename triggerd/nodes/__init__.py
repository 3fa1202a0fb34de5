"""Node types: one module per type behind a registry (see :mod:`triggerd.nodes.registry`,
which holds the list of built-in types)."""
