-- Schema version 2 to 3: units carry their assignment's index, and an index reads
-- the available units of a run in (assignment, unit) order, so that a registration
-- no longer sorts every available unit of the run to find the first ones.
ALTER TABLE units ADD COLUMN assignment_index INTEGER;
UPDATE units SET assignment_index = (
    SELECT a.assignment_index FROM assignments a WHERE a.id = units.assignment_id
);
CREATE INDEX units_available_in_order ON units (task_run_id, status, assignment_index, unit_index);
