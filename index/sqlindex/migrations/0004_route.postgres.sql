-- The forwarding queue (package route): one task per study and
-- destination, with the instances it has to send. Rows are written in
-- the transaction of the instance they are for (a transactional
-- outbox). Times are microseconds since 1970, UTC.
CREATE TABLE route_task (
    id           BIGSERIAL PRIMARY KEY,
    destination  TEXT    NOT NULL,
    study        TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    win          TEXT    NOT NULL DEFAULT '',
    attempts     BIGINT  NOT NULL DEFAULT 0,
    due_at       BIGINT  NOT NULL,
    since        BIGINT  NOT NULL,
    last_attempt BIGINT  NOT NULL DEFAULT 0,
    last_error   TEXT    NOT NULL DEFAULT '',
    finished_at  BIGINT  NOT NULL DEFAULT 0,
    owner        TEXT    NOT NULL DEFAULT '',
    token        TEXT    NOT NULL DEFAULT '',
    lease_until  BIGINT  NOT NULL DEFAULT 0,
    UNIQUE (destination, study)
);
CREATE INDEX route_task_take ON route_task (destination, state, priority DESC, due_at, id);
CREATE INDEX route_task_lease ON route_task (state, lease_until);
CREATE INDEX route_task_done ON route_task (state, finished_at);
CREATE TABLE route_item (
    task_id BIGINT  NOT NULL REFERENCES route_task (id) ON DELETE CASCADE,
    sop     TEXT    NOT NULL,
    gen     BIGINT  NOT NULL,
    state   TEXT    NOT NULL,
    refused TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (task_id, sop)
);
CREATE INDEX route_item_state ON route_item (task_id, state);
