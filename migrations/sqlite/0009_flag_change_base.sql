-- What each member a change request touches looked like when it was proposed (a JSON
-- object: member pointer -> SHA-256 of its definition, null when absent). Applying is
-- refused when any of them has moved on since, instead of overwriting it silently. Rows
-- from before this column have none and are not checked.
ALTER TABLE flag_changes ADD COLUMN base TEXT;
