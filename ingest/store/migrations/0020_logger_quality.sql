-- The flag a logger sent with a reading is kept apart from the stored QC flag,
-- so that re-evaluating the QC tests never loses what the logger said.
-- readings.quality = the worst of logger_quality and the QARTOD tests.
ALTER TABLE readings ADD COLUMN logger_quality smallint CHECK (logger_quality IN (1, 2, 3, 4, 9));
