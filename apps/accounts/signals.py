"""API tokens end with the credentials they were issued for: a password change or a
deactivation deletes every token of the user (django-rest-knox stores them hashed). The
deletion is in the same transaction as the change, so a rolled-back change keeps them."""

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from .models import User


@receiver(pre_save, sender=User, dispatch_uid="accounts.credentials_changed")
def _note_credential_change(sender: type[User], instance: User, raw: bool = False, **kwargs: Any) -> None:
    instance._revoke_tokens = False
    if raw or instance.pk is None:
        return
    before = User.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if before is not None:
        instance._revoke_tokens = before["password"] != instance.password or (
            before["is_active"] and not instance.is_active
        )


@receiver(post_save, sender=User, dispatch_uid="accounts.revoke_tokens")
def _revoke_tokens(sender: type[User], instance: User, raw: bool = False, **kwargs: Any) -> None:
    if getattr(instance, "_revoke_tokens", False):
        from .services import tokens_revoke

        tokens_revoke(user=instance)
        instance._revoke_tokens = False
