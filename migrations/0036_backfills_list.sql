-- `triggerd backfills list` and GET /api/v1/backfills page backfills newest first: an
-- index in that order, so a page reads its rows and no more (finished backfills are kept
-- for [executor] audit_retention, a year by default).
CREATE INDEX backfills_created ON backfills (created_at DESC, id DESC);
