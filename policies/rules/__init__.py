"""Rule modules by domain; importing this package registers every rule in `platform_infra.policies.registry`."""

from platform_infra.policies.rules import (  # noqa: F401 imported for registration
    accounts,
    backups,
    configuration,
    containers,
    datastores,
    edge,
    engine,
    evidence,
    images,
    monitoring,
    networks,
    secrets,
    swarm,
    validation,
)
