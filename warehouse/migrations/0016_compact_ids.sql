-- Ids a device mints in sequence (docs/design.md, "Event ids"): a collector's event ids differ only in their last
-- digits (collector/intervals.py event_id), and a session is named by its first interval's device_seq
-- (stream_jobs/sessionize.py). Stored with codecs that see it, an event id takes about a byte instead of 16 and a
-- session id a few instead of 39. Rows stored before keep their random ids; a merge recompresses them.
ALTER TABLE intervals MODIFY COLUMN event_id UUID CODEC(ZSTD(1));
ALTER TABLE intervals MODIFY COLUMN device_seq UInt64 CODEC(Delta, ZSTD(1));
ALTER TABLE app_sessions MODIFY COLUMN session_id String CODEC(ZSTD(1));
ALTER TABLE app_sessions MODIFY COLUMN version UInt64 CODEC(Delta, ZSTD(1));
ALTER TABLE focus_sessions MODIFY COLUMN session_id String CODEC(ZSTD(1));
ALTER TABLE focus_sessions MODIFY COLUMN version UInt64 CODEC(Delta, ZSTD(1));
