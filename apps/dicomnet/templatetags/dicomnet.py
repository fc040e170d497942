"""`{% dicom_outbox case %}`: the case page's box saying what was sent back to the PACS
(templates/dicomnet/_outbox.html), with any received instance that failed to unpack; nothing
for a case that did not come from the network."""

from django import template

from apps.cases.models import Case
from apps.dicomnet.selectors import case_outbox_state

register = template.Library()


@register.inclusion_tag("dicomnet/_outbox.html")
def dicom_outbox(case: Case) -> dict:
    # The page already fetched the case through case_get (the user's clinic), and audited it.
    return {"items": case_outbox_state(case_id=case.pk)}
