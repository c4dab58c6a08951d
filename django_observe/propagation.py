"""The public name of outbound propagation: ``from django_observe.propagation import outbound_headers``.

The code lives in ``django_observe.integrations.http_clients``.
"""

from .integrations.http_clients import HostAllowlist, outbound_headers

__all__ = ["HostAllowlist", "outbound_headers"]
