-- Schema version 1 to 2: agents keep the task data they were given, so that an
-- agent still active when the daemon stopped can be carried on after a restart.
-- Agents stored before this step have NULL (never recorded).
ALTER TABLE agents ADD COLUMN init_task_data TEXT;
