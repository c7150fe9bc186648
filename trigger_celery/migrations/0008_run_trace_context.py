from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("trigger_celery", "0007_dashboard"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="trace_context",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="W3C trace context of the trigger (OpenTelemetry), for the attempts' spans",
            ),
        ),
    ]
