from django.db import migrations, models

# The final statuses (core.statuses.FINAL_STATUSES) as they were when this was written.
FINAL = ["CANCELED", "COMPLETED", "CRASHED", "EXPIRED", "FAILED", "SYSTEM_FAILURE", "TIMED_OUT"]


class Migration(migrations.Migration):
    dependencies = [
        ("trigger_celery", "0008_run_trace_context"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("batch__isnull", False), ~models.Q(status__in=FINAL)),
                fields=["batch"],
                name="tc_run_batch_open",
            ),
        ),
    ]
