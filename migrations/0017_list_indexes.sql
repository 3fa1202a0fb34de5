-- Keyset pages of the workflow and trigger lists (admin API, console, CLI) walk workflows
-- in key order: without this index every page sorted every workflow.
CREATE INDEX workflows_key ON workflows (key, id);
