"""Node types: one module per type behind a registry (see :mod:`triggerd.nodes.registry`)."""

BUILTIN_NODE_TYPES: tuple[str, ...] = (
    "http",
    "set",
    "if",
    "switch",
    "wait",
    "log",
    "fail",
    "respond",
    "noop",
)
