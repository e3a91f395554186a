-- Architect database, schema version 4: the whole schema for a new database.
--
-- Plain SQL meant to run on SQLite and, with the marked exceptions, on
-- PostgreSQL: "INTEGER PRIMARY KEY" becomes "BIGSERIAL PRIMARY KEY" there;
-- everything else (TEXT, INTEGER, REAL/DOUBLE PRECISION, CHECK, UNIQUE,
-- REFERENCES) is standard. JSON values are stored as TEXT; times are Unix
-- seconds as REAL.
--
-- An existing database is never recreated: it is brought here by the
-- upgrade_vN_to_vN+1.sql steps beside this file.

CREATE TABLE schema_version (
    version INTEGER NOT NULL
);

-- A task run: one named run of a task, with the config it ran with.
CREATE TABLE task_runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,           -- JSON object
    created_at REAL NOT NULL
);

-- One line of the task's assignment data.
CREATE TABLE assignments (
    id INTEGER PRIMARY KEY,
    task_run_id INTEGER NOT NULL REFERENCES task_runs (id),
    assignment_index INTEGER NOT NULL,
    data TEXT NOT NULL,             -- JSON
    created_at REAL NOT NULL,
    UNIQUE (task_run_id, assignment_index)
);

-- One agent's worth of work within an assignment.
-- agent_id is the unit agent holding it (reserved or completed), NULL when available.
CREATE TABLE units (
    id INTEGER PRIMARY KEY,
    task_run_id INTEGER NOT NULL REFERENCES task_runs (id),
    assignment_id INTEGER NOT NULL REFERENCES assignments (id),
    unit_index INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('available', 'reserved', 'completed')),
    agent_id TEXT,
    created_at REAL NOT NULL,
    assignment_index INTEGER,       -- its assignment's, copied: units are read in this order
    UNIQUE (assignment_id, unit_index)
);
CREATE INDEX units_by_run_status ON units (task_run_id, status);
-- A registration reads the available units a page at a time in (assignment, unit)
-- order: this index gives each page without sorting all the available units.
CREATE INDEX units_available_in_order ON units (task_run_id, status, assignment_index, unit_index);

CREATE TABLE workers (
    id INTEGER PRIMARY KEY,
    provider_type TEXT NOT NULL,
    worker_name TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (provider_type, worker_name)
);

CREATE TABLE qualifications (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);

-- The value a worker holds for a qualification; granting again replaces it.
CREATE TABLE granted_qualifications (
    worker_id INTEGER NOT NULL REFERENCES workers (id),
    qualification_id INTEGER NOT NULL REFERENCES qualifications (id),
    value TEXT NOT NULL,            -- JSON
    granted_at REAL NOT NULL,
    PRIMARY KEY (worker_id, qualification_id)
);

-- Unit agents and onboarding agents. agent_id is chosen by the caller;
-- seq only orders agents by creation.
CREATE TABLE agents (
    seq INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('unit', 'onboarding')),
    task_run_id INTEGER NOT NULL REFERENCES task_runs (id),
    worker_id INTEGER NOT NULL REFERENCES workers (id),
    unit_id INTEGER REFERENCES units (id),
    agent_registration_id TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    init_task_data TEXT,            -- JSON: the task data it was given; NULL if never recorded
    CHECK ((kind = 'unit') = (unit_id IS NOT NULL))
);
CREATE INDEX agents_by_registration ON agents (agent_registration_id);
CREATE INDEX agents_by_worker ON agents (worker_id, task_run_id);
CREATE INDEX agents_by_status ON agents (status);

-- Every status an agent has had, its first one included, with its time.
CREATE TABLE agent_status_history (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (agent_id),
    status TEXT NOT NULL,
    changed_at REAL NOT NULL
);
CREATE INDEX agent_status_history_by_agent ON agent_status_history (agent_id);

-- What a worker submitted. dedupe_key (when given) makes a repeated delivery
-- of the same submission detectable: it is stored once.
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (agent_id),
    kind TEXT NOT NULL CHECK (kind IN ('unit', 'onboarding', 'metadata')),
    data TEXT NOT NULL,             -- JSON
    dedupe_key TEXT UNIQUE,
    received_at REAL NOT NULL
);
CREATE INDEX submissions_by_agent ON submissions (agent_id);

-- Files that came with a submission; stored_path is relative to the data folder.
CREATE TABLE submission_files (
    id INTEGER PRIMARY KEY,
    submission_id INTEGER NOT NULL REFERENCES submissions (id),
    original_name TEXT NOT NULL,
    stored_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mimetype TEXT NOT NULL
);
CREATE INDEX submission_files_by_submission ON submission_files (submission_id);

-- The live updates of each agent, both ways, in arrival order. A repeated
-- update_id for the same agent and direction is stored once (NULLs never clash).
CREATE TABLE live_updates (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (agent_id),
    direction TEXT NOT NULL CHECK (direction IN ('mephisto_bound', 'client_bound')),
    update_id TEXT,
    data TEXT NOT NULL,             -- JSON
    created_at REAL NOT NULL,
    UNIQUE (agent_id, direction, update_id)
);

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
