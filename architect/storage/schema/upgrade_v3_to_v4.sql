-- Schema version 3 to 4: what the operator changed at run time, and each agent's
-- connection events (sockets, reloads, heartbeat gaps, the backend's own view).

-- A run's settings changed at run time (architect admin set), re-applied at a restart
-- unless the ini file's value is no longer ini_value (the researcher edited it since).
CREATE TABLE run_settings (
    task_run_id INTEGER NOT NULL REFERENCES task_runs (id),
    name TEXT NOT NULL,
    value TEXT NOT NULL,            -- JSON
    ini_value TEXT NOT NULL,        -- JSON: the ini file's value when it was changed
    changed_at REAL NOT NULL,
    PRIMARY KEY (task_run_id, name)
);

-- Every change of a run setting, in order; value NULL: back to the ini file's value.
CREATE TABLE run_setting_changes (
    id INTEGER PRIMARY KEY,
    task_run_id INTEGER NOT NULL REFERENCES task_runs (id),
    name TEXT NOT NULL,
    value TEXT,                     -- JSON, or NULL for a reset
    ini_value TEXT NOT NULL,        -- JSON
    reason TEXT NOT NULL,           -- admin, reset, ini_changed
    changed_at REAL NOT NULL
);
CREATE INDEX run_setting_changes_by_run ON run_setting_changes (task_run_id);

-- An agent's connection events: socket_open, socket_close (code), reload,
-- heartbeat_gap (seconds), router_lost, registered_again. At most a bounded number
-- of each kind per agent is kept here; the rest are counted in connection_event_repeats.
CREATE TABLE connection_events (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (agent_id),
    event TEXT NOT NULL,
    happened_at REAL NOT NULL,
    code INTEGER,                   -- socket_close: the WebSocket close code
    seconds REAL                    -- heartbeat_gap: its length
);
CREATE INDEX connection_events_by_agent ON connection_events (agent_id);

CREATE TABLE connection_event_repeats (
    agent_id TEXT NOT NULL REFERENCES agents (agent_id),
    event TEXT NOT NULL,
    kept INTEGER NOT NULL,          -- rows of this kind in connection_events
    repeats INTEGER NOT NULL,       -- those past the bound: counted, not kept
    last_at REAL NOT NULL,
    PRIMARY KEY (agent_id, event)
);
