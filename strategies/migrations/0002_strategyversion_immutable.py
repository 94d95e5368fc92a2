"""Make published versions immutable in the database itself: any UPDATE is refused, whatever
code path (queryset.update, raw SQL, admin) attempts it."""

from django.db import migrations

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION strategies_version_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'strategy versions are immutable: publish a new version instead';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER strategies_version_no_update BEFORE UPDATE ON strategies_strategyversion
    FOR EACH ROW EXECUTE FUNCTION strategies_version_immutable();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS strategies_version_no_update ON strategies_strategyversion;
DROP FUNCTION IF EXISTS strategies_version_immutable();
"""
SQLITE_UP = """
CREATE TRIGGER strategies_version_no_update BEFORE UPDATE ON strategies_strategyversion
BEGIN
    SELECT RAISE(ABORT, 'strategy versions are immutable: publish a new version instead');
END;
"""
SQLITE_DOWN = "DROP TRIGGER IF EXISTS strategies_version_no_update;"


def create_trigger(apps, schema_editor):
    sql = POSTGRES_UP if schema_editor.connection.vendor == "postgresql" else SQLITE_UP
    schema_editor.execute(sql)


def drop_trigger(apps, schema_editor):
    sql = POSTGRES_DOWN if schema_editor.connection.vendor == "postgresql" else SQLITE_DOWN
    for statement in filter(str.strip, sql.split(";\n")):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("strategies", "0001_initial")]
    operations = [migrations.RunPython(create_trigger, drop_trigger)]
