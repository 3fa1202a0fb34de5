"""Definition files: parsing and validating workflows, graphs and triggers (no I/O but
reading the files themselves).

Validation happens in three layers, all of whose problems are reported together, each with
its file and JSON path (``config/x.yaml: $.workflows[0].graph.edges[2].to: unknown node
'alrt'``):

1. reading: YAML/JSON syntax (with the line), duplicate keys, values JSON cannot hold
   (:mod:`.loading`);
2. the JSON Schema ``triggerd/schemas/definitions.schema.json``: structure, unknown keys,
   enums, names and durations (:mod:`.schema`);
3. semantic checks: graph shape, branch labels, cron expressions and zones, auth schemes,
   unique keys, trigger names and webhook paths (:mod:`.checks`).

Stored documents (``workflow_versions.graph``, ``workflow_triggers.config``) use the same
keys as the file; :mod:`.serialize` writes them in one canonical form.
"""

from triggerd.definitions.api import (
    check_documents,
    check_files,
    graph_from_json,
    load_documents,
    load_files,
    parse_trigger_config,
)
from triggerd.definitions.checks import known_node_types
from triggerd.definitions.schema import definitions_schema
from triggerd.definitions.serialize import canonical_json, graph_to_json, trigger_config_to_json

__all__ = [
    "canonical_json",
    "check_documents",
    "check_files",
    "definitions_schema",
    "graph_from_json",
    "graph_to_json",
    "known_node_types",
    "load_documents",
    "load_files",
    "parse_trigger_config",
    "trigger_config_to_json",
]
