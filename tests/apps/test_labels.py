"""One label vocabulary: the model's output, readings, forms, filters, API and schema agree."""

import pytest
from django.urls import reverse

from apps.scans.labels import MODEL_LABELS, READING_CHOICES, READING_LABELS, TUMOUR_LABELS, Label, probability_text
from apps.scans.services import ModelOutputError, _check_result
from apps.web.forms import HistoryFilterForm, ReviewForm, WorklistFilterForm
from apps.web.templatetags.web_extras import label_name
from mri.results import AnalysisResult
from mri.vocabulary import CLASS_NAMES


def test_stored_values_are_the_models_label_strings_in_logit_order():
    assert tuple(label.value for label in MODEL_LABELS) == CLASS_NAMES
    assert READING_LABELS[-1] == Label.OTHER
    assert Label.OTHER not in MODEL_LABELS
    assert set(TUMOUR_LABELS) == {"glioma", "meningioma", "pituitary"}


def test_names_as_a_radiologist_reads_them():
    assert Label.name_of("notumor") == "No tumour"
    assert label_name("notumor") == "No tumour"
    assert label_name("pituitary") == "Pituitary tumour"
    assert Label.name_of("something-new") == "something-new"  # unknown values are shown as they are


def test_forms_and_filters_use_the_vocabulary():
    assert HistoryFilterForm().fields["label"].choices[1:] == [(label.value, label.label) for label in MODEL_LABELS]
    assert WorklistFilterForm().fields["label"].choices == HistoryFilterForm().fields["label"].choices
    assert ReviewForm().fields["reading"].choices[1:] == READING_CHOICES


def test_the_model_may_not_output_a_reading_only_label():
    result = AnalysisResult(
        label="other",
        probabilities=dict.fromkeys(CLASS_NAMES, 0.25),
        heatmap=None,
        overlay_png=b"\x89PNG",
        model_version="x",
        timings_ms={},
    )
    with pytest.raises(ModelOutputError):
        _check_result(result)


@pytest.mark.parametrize(("value", "text"), [(1.0, ">99.9"), (0.99951, ">99.9"), (0.0, "<0.1"), (0.7, "70.0")])
def test_probability_text_never_claims_certainty(value, text):
    assert probability_text(value) == text


def test_schema_lists_the_desk_endpoints(client, north):
    client.force_login(north.staff)  # the schema is for signed-in users (issue 15)
    paths = client.get(reverse("api:schema"), HTTP_ACCEPT="application/json").json()["paths"]
    for path in (
        "/api/worklist/",
        "/api/scans/{scan_id}/reviews/",
        "/api/cases/{case_id}/sign/",
        "/api/cases/{case_id}/report.pdf",
        "/api/agreement/",
        "/api/agreement/readings.csv",
    ):
        assert path in paths
    # The reading's enum in the schema is the vocabulary's.
    schema = client.get(reverse("api:schema"), HTTP_ACCEPT="application/json").json()
    enums = [component.get("enum") for component in schema["components"]["schemas"].values()]
    assert [value for value, _ in READING_CHOICES] in enums
