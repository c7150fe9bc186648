# Schedule.version: moved on by every write of a schedule row; beat's compare-and-set
# when it fires a tick compares it instead of updated_at (see schedule_models.py). The
# default is the database's too, so processes of the release before, which do not know
# the column, still insert schedules while an upgrade rolls out.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('trigger_celery', '0015_attempt_resumed_at'),
    ]

    operations = [
        migrations.AddField(
            model_name='schedule',
            name='version',
            field=models.PositiveBigIntegerField(db_default=1, default=1, editable=False),
        ),
    ]
