-- Day partitions for a least-privilege writer (issue 14): the sink logs in as a role that can
-- only read and write rows (driftline.sinks.grants), so it cannot CREATE TABLE ... PARTITION OF
-- a table it does not own. This function, owned by the schema's owner and run with its rights
-- (SECURITY DEFINER), creates exactly one thing: the missing UTC-day partition of one of this
-- schema's partitioned tables. EXECUTE is granted to the writer role by grant_writer only.
CREATE OR REPLACE FUNCTION driftline_create_day_partition(parent text, day date)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
DECLARE
    owner_schema text := current_schema();
    partition text := parent || '_p' || to_char(day, 'YYYYMMDD');
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_partitioned_table p
        JOIN pg_class c ON c.oid = p.partrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = owner_schema AND c.relname = parent
    ) THEN
        RAISE EXCEPTION 'driftline_create_day_partition: % is not a partitioned table of schema %',
            parent, owner_schema USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_regclass(format('%I.%I', owner_schema, partition)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
        owner_schema, partition, owner_schema, parent,
        (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC')
    );
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION driftline_create_day_partition(text, date) FROM PUBLIC;
