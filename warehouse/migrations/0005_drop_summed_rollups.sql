-- The rollups of 0003, superseded by usage_by_hour and usage_by_day (0004), which hold a copy of them.
DROP TABLE IF EXISTS usage_daily;

DROP TABLE IF EXISTS usage_hourly
