"""Case.worklist_priority: the worklist's priority stored per case (indexed with the clinic and
the date), backfilled from the analysed scans' results with the rule of apps.cases.worklist."""

from django.conf import settings
from django.db import migrations, models

# The rule as it stood when the field was added (apps.cases.worklist.Priority,
# mri.vocabulary.LOW_CONFIDENCE, apps.scans.labels.TUMOUR_LABELS), frozen here.
LOW_CONFIDENCE = 0.70
TUMOUR_LABELS = {"glioma", "meningioma", "pituitary"}
LOW_CONFIDENCE_TUMOUR, TUMOUR, OTHER = 0, 1, 2


def _result_priority(label: str, probabilities: dict) -> int:
    if label in TUMOUR_LABELS:
        top = float(probabilities.get(label, 1.0))
        return LOW_CONFIDENCE_TUMOUR if top < LOW_CONFIDENCE else TUMOUR
    return OTHER


def backfill(apps, schema_editor):
    Case = apps.get_model("cases", "Case")
    Prediction = apps.get_model("scans", "Prediction")
    priorities: dict[int, int] = {}
    results = Prediction.objects.filter(scan__status="done", scan__case__signed_at__isnull=True).values_list(
        "scan__case_id", "label", "probabilities"
    )
    for case_id, label, probabilities in results.iterator(chunk_size=2000):
        priority = _result_priority(label, probabilities or {})
        priorities[case_id] = min(priority, priorities.get(case_id, OTHER))
    for value in (LOW_CONFIDENCE_TUMOUR, TUMOUR, OTHER):
        ids = [pk for pk, p in priorities.items() if p == value]
        for start in range(0, len(ids), 500):
            Case._base_manager.filter(pk__in=ids[start : start + 500]).update(worklist_priority=value)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('cases', '0003_case_signoff_addenda'),
        ('scans', '0006_scan_rejected_status_ood_score'),
        ('patients', '0002_patient_created_by_protect'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='case',
            name='worklist_priority',
            field=models.PositiveSmallIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name='case',
            index=models.Index(fields=['clinic', 'worklist_priority', 'created_at'], name='case_worklist_order'),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
