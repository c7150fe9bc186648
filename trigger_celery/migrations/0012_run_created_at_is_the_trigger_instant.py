import django.utils.timezone
from django.db import migrations, models

# created_at takes the trigger's own instant instead of auto_now_add. The column does not
# change (Django keeps defaults in Python), so only the model state moves: SQLite would
# otherwise copy the whole run table for nothing.


class Migration(migrations.Migration):
    dependencies = [
        ("trigger_celery", "0011_store_slot_started"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="run",
                    name="created_at",
                    field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
            ],
        ),
    ]
