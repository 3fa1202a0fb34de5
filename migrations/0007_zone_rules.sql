-- The rules of each time zone that cron triggers used when definitions were last applied,
-- as a fingerprint of the zone's compiled tz database file: `triggerd doctor` names the
-- zones whose rules changed since (a tzdata update that moves a DST date moves fires).
CREATE TABLE zone_rules (
    zone        text PRIMARY KEY,
    fingerprint text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
