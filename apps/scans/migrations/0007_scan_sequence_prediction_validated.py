from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scans", "0006_scan_rejected_status_ood_score"),
    ]

    operations = [
        migrations.AddField(
            model_name="scan",
            name="sequence",
            field=models.CharField(
                choices=[
                    ("t1", "T1"),
                    ("t1c", "T1 post-contrast"),
                    ("t2", "T2"),
                    ("flair", "FLAIR"),
                    ("other", "other sequence"),
                    ("unknown", "unknown sequence"),
                ],
                default="unknown",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="scan",
            name="sequence_source",
            field=models.CharField(
                choices=[("dicom", "dicom"), ("image", "image"), ("unknown", "unknown")],
                default="unknown",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="prediction",
            name="validated",
            field=models.BooleanField(blank=True, null=True),
        ),
    ]
