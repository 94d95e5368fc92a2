from django.db import migrations, models
from django.db.models import Count, Sum


def order_stats_fill_in(apps, schema_editor):
    """Runs recorded before the field existed get their stats from their stored orders and fills."""
    Run = apps.get_model("runs", "Run")
    Order = apps.get_model("portfolio", "Order")
    Fill = apps.get_model("portfolio", "Fill")
    # order_by(): the models' default ordering would join DISTINCT and GROUP BY.
    for run_id in Order.objects.order_by().values_list("run_id", flat=True).distinct():
        states = dict(Order.objects.filter(run_id=run_id).order_by().values_list("state").annotate(n=Count("id")).values_list("state", "n"))
        fills = Fill.objects.filter(run_id=run_id).aggregate(n=Count("id"), quantity=Sum("quantity"), commission=Sum("commission"))
        Run.objects.filter(pk=run_id).update(
            order_stats={
                "orders": states,
                "fills": fills["n"],
                "filled_quantity": str(fills["quantity"] or 0),
                "commission": str(fills["commission"] or 0),
            }
        )


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0003_study"),
        ("portfolio", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="order_stats",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(order_stats_fill_in, migrations.RunPython.noop),
    ]
