"""Django glue: settings.CODE_JAIL is applied when Django builds its middleware chain."""

# pylint: skip-file

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.utils.deprecation import MiddlewareMixin

from . import django_integration_utils


class ConfigureCodeJailMiddleware(MiddlewareMixin):
    """
    Listed in MIDDLEWARE only for its constructor, which Django calls once per process at
    start-up: it applies settings.CODE_JAIL, then raises MiddlewareNotUsed so that Django drops
    it from the chain and no request ever passes through it.
    """
    def __init__(self, *args, **kwargs):
        django_integration_utils.apply_django_settings(settings.CODE_JAIL)
        super().__init__(*args, **kwargs)
        raise MiddlewareNotUsed
