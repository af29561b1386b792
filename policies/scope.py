"""Which workloads a rule looks at, declared beside the rule so that both the policy wrapper and
`infra check` (which offers a resource only to the policies in scope) use the same predicate.

A predicate reads proxied props: an unknown value raises, and the rule then reports it as unknown.
"""

from __future__ import annotations

from collections.abc import Callable

from platform_infra.policies import nginxconf
from platform_infra.policies.props import JWT_NAME, Workload, is_image_id

Scope = Callable[[Workload], bool]
Check = Callable[..., None]


def reads_identity(function: Check) -> Check:
    """Mark a scope or check that reads a workload's kind or role: its rule then judges workloads over the
    stack's resource graph, where an image ID leads to the image resource it came from."""
    function.reads_identity = True  # type: ignore[attr-defined]
    return function


def kind_is(*kinds: str) -> Scope:
    @reads_identity
    def scope(w: Workload) -> bool:
        return w.kind in kinds

    scope.__doc__ = f"workloads of kind {', '.join(kinds)}"
    return scope


def serves_nginx(w: Workload) -> bool:
    """workloads with an uploaded nginx config"""
    return any(nginxconf.is_nginx_file(path) for path in w.uploaded_files)


@reads_identity
def load_balancer_or_nginx(w: Workload) -> bool:
    """load balancers and workloads with an uploaded nginx config"""
    return w.role == "lb" or serves_nginx(w)


@reads_identity
def app_or_nginx(w: Workload) -> bool:
    """applications (their env) and workloads with an uploaded nginx config"""
    return w.role == "app" or serves_nginx(w)


def publishes_ports(w: Workload) -> bool:
    """workloads that publish ports"""
    return bool(w.ports)


def names_an_image(w: Workload) -> bool:
    """workloads whose image is a name, not an image ID (check the RemoteImage otherwise)"""
    return bool(w.image) and not is_image_id(w.image)


def has_jwt_env(w: Workload) -> bool:
    """workloads with a JWT secret or key in their env"""
    return any(JWT_NAME.search(key) for key in w.env)
