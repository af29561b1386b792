"""Rule modules by domain; importing this package registers every rule in `policies.registry`."""

from policies.rules import (  # noqa: F401 imported for registration
    backups,
    configuration,
    containers,
    datastores,
    edge,
    evidence,
    images,
    monitoring,
    networks,
    secrets,
    swarm,
    validation,
)
