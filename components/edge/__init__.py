"""Edge load balancer (nginx): typed settings and a pure nginx.conf renderer/parser.

    config = EdgeConfig(server_names=["api.example.com"], cors_allowed_origins=["https://app.example.com"])
    text = render_nginx_conf(
        config,
        ["api-gateway-1:8080", "api-gateway-2:8080"],  # replicas, resolvable where nginx runs
        "/etc/nginx/tls/fullchain.pem",
        "/etc/nginx/tls/privkey.pem",
    )
    parsed = parse_nginx_conf(text)  # crossplane directive list, e.g. for policy rules

Published paths: /api/ (rate limited, CORS from the allowlist), the login path (stricter zone) and
the exact health path (/actuator/health, so health checks through the edge keep working). With
block_management_paths (default) Swagger UI, OpenAPI docs and every other actuator path answer 404;
any other path answers 404 as well.
"""

from platform_infra.components.edge.model import EdgeConfig, EdgeDeployment
from platform_infra.components.edge.nginx import (
    iter_directives,
    login_path_regex,
    parse_nginx_conf,
    render_nginx_conf,
    security_headers,
)

__all__ = [
    "EdgeConfig",
    "EdgeDeployment",
    "iter_directives",
    "login_path_regex",
    "parse_nginx_conf",
    "render_nginx_conf",
    "security_headers",
]
