-- Indexes that answer from the index alone the study list's searches and
-- the count of the forwarding queue that the metrics make at each scrape.
-- A search by study date finds the pks of the matching studies, in pk
-- order, before reading their rows: the date index carries the pk, so
-- that no row is read to sort them (SQLite's indexes carry it anyway,
-- PostgreSQL's answer from the index only with it). A search by
-- modality checks the series of each candidate study: with the
-- modality in the index of their study, no series row is read.
DROP INDEX study_study_date;
CREATE INDEX study_study_date ON study (study_date_norm, study_time_norm, pk);
DROP INDEX series_study_fk;
CREATE INDEX series_study_fk ON series (study_fk, modality);

-- The metrics count the forwarding tasks not done at every scrape: this
-- index answers that count alone, without reading the tasks done.
CREATE INDEX route_task_depth ON route_task (state, destination, since);
