-- daily_model_training: a file counts as trained on only once its training run succeeded. A
-- training run that failed (or a hand-over that never started one) hands the file over again
-- on the next daily run, as a new attempt with a run id of its own.
ALTER TABLE dataset_files
    ADD COLUMN status  text    NOT NULL DEFAULT 'handed' CHECK (status IN ('handed', 'trained', 'failed')),
    ADD COLUMN attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1);
