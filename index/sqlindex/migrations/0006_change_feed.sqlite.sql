-- The change feed (see package index): one row per instance created,
-- replaced, corrected or deleted, numbered by seq from 1 without gaps in
-- the order the changes committed. The writer numbers its rows at the
-- end of its transaction, after the feed's lock on PostgreSQL (SQLite
-- takes one writer at a time), so that a row never becomes visible
-- before one with a lower number. changed_at is microseconds since
-- 1970-01-01 UTC.
CREATE TABLE change_feed (
	seq INTEGER PRIMARY KEY,
	kind TEXT NOT NULL CHECK (kind IN ('created', 'replaced', 'corrected', 'deleted')),
	study_instance_uid TEXT NOT NULL,
	series_instance_uid TEXT NOT NULL,
	sop_instance_uid TEXT NOT NULL,
	changed_at INTEGER NOT NULL
) STRICT;

-- An archive indexed before the feed existed starts it with the
-- instances it holds, in the order they were first indexed, so that a
-- follower reading from the start learns of every instance.
INSERT INTO change_feed (seq, kind, study_instance_uid, series_instance_uid, sop_instance_uid, changed_at)
SELECT ROW_NUMBER() OVER (ORDER BY pk), 'created', study_instance_uid, series_instance_uid, sop_instance_uid, indexed_at
FROM instance;
