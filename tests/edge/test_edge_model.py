"""EdgeConfig / EdgeDeployment: secure defaults and clear refusals of weakening values."""

import pytest
from pydantic import ValidationError

from platform_infra.components.edge import EdgeConfig, EdgeDeployment


def make(**overrides) -> EdgeConfig:
    return EdgeConfig(**{"server_names": ["api.example.com"], **overrides})


def error_message(excinfo: pytest.ExceptionInfo[ValidationError]) -> str:
    errors = excinfo.value.errors()
    assert len(errors) == 1, errors
    return errors[0]["msg"]


def test_defaults_are_the_secure_values():
    config = make()
    assert config.tls_protocols == ("TLSv1.2", "TLSv1.3")
    assert config.tls_curves == ("X25519", "prime256v1", "secp384r1")
    assert all(cipher.startswith("ECDHE-") for cipher in config.tls_ciphers)
    assert config.ssl_session_tickets is False
    assert config.hsts_max_age_seconds == 63_072_000
    assert config.hsts_include_subdomains is True
    assert "frame-ancestors 'none'" in config.content_security_policy
    assert config.block_management_paths is True
    assert config.health_path == "/actuator/health"
    assert config.cors_allowed_origins == ()
    assert config.cors_allow_credentials is False
    assert config.login_rate_per_minute < config.api_rate_per_second * 60
    assert config.client_max_body_size_bytes == 1_048_576


def test_server_names_are_required():
    with pytest.raises(ValidationError) as excinfo:
        EdgeConfig()
    assert excinfo.value.errors()[0]["loc"] == ("server_names",)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "tls_protocols",
            ["TLSv1", "TLSv1.2"],
            "tls_protocols: 'TLSv1' is not allowed; allowed: TLSv1.2, TLSv1.3",
        ),
        ("tls_protocols", ["TLSv1.1"], "allowed: TLSv1.2, TLSv1.3"),
        ("tls_protocols", ["SSLv3"], "allowed: TLSv1.2, TLSv1.3"),
        ("tls_protocols", [], "tls_protocols: must not be empty"),
        ("tls_ciphers", ["AES128-SHA"], "tls_ciphers: 'AES128-SHA' is not a Mozilla intermediate cipher"),
        ("tls_curves", ["X25519MLKEM768"], "tls_curves: 'X25519MLKEM768' is rejected by OpenSSL 3.0"),
        ("tls_curves", ["secp521r1"], "allowed: X25519, prime256v1, secp384r1"),
        ("hsts_max_age_seconds", 86400, "hsts_max_age_seconds: 86400 is too short; must be >= 31536000"),
        ("cors_allowed_origins", ["*"], "cors_allowed_origins: '*' is never allowed"),
        ("cors_allowed_origins", ["null"], "cors_allowed_origins: 'null' is never allowed"),
        ("cors_allowed_origins", ["http://app.example.com"], "is not an exact https origin"),
        ("cors_allowed_origins", ["https://app.example.com/"], "is not an exact https origin"),
        ("cors_allowed_origins", ["https://*.example.com"], "is not an exact https origin"),
        ("cors_allowed_origins", ["https://app.example.com:443"], "omit the default port 443"),
        ("cors_allowed_origins", ["https://a.example.com", "https://A.example.com"], "duplicate entries"),
        ("cors_allowed_methods", ["TRACE"], "cors_allowed_methods: 'TRACE' is not allowed"),
        ("cors_allowed_headers", ["*"], "cors_allowed_headers: '*' is not allowed"),
        ("server_names", ["*.example.com"], "server_names: '*.example.com' is not a DNS host name"),
        ("server_names", ["10.0.0.1"], "is not a DNS host name"),
        ("server_names", ["api.example.com:443"], "is not a DNS host name"),
        ("server_names", ["under_score.example.com"], "is not a DNS host name"),
        ("content_security_policy", "default-src 'self'", "must contain a frame-ancestors directive"),
        ("health_path", "/actuator/health;", "health_path: '/actuator/health;' must be an absolute URL path"),
        ("login_path", "api/v1/auth/login", "login_path: 'api/v1/auth/login' must be an absolute URL path"),
        (
            "login_rate_per_minute",
            600,
            "login_rate_per_minute: 600/min must be stricter than api_rate_per_second",
        ),
        ("login_burst", 50, "login_burst: 50 must not exceed api_burst"),
    ],
)
def test_weakening_values_are_refused_with_a_clear_message(field, value, expected):
    with pytest.raises(ValidationError) as excinfo:
        make(**{field: value})
    assert expected in error_message(excinfo)
    if field not in ("login_rate_per_minute", "login_burst"):  # model-level check
        assert excinfo.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("client_max_body_size_bytes", 0),  # 0 would disable the limit in nginx
        ("api_rate_per_second", 0),
        ("cors_max_age_seconds", 86401),
        ("upstream_max_fails", 0),
    ],
)
def test_numeric_bounds_name_the_field(field, value):
    with pytest.raises(ValidationError) as excinfo:
        make(**{field: value})
    assert excinfo.value.errors()[0]["loc"] == (field,)


def test_unknown_fields_are_refused_and_the_model_is_frozen():
    with pytest.raises(ValidationError) as excinfo:
        make(ssl_protocols=["TLSv1.2"])
    assert excinfo.value.errors()[0]["type"] == "extra_forbidden"
    config = make()
    with pytest.raises(ValidationError):
        config.hsts_max_age_seconds = 1


def test_names_and_origins_are_normalized_to_lower_case():
    config = make(server_names=["API.Example.com"], cors_allowed_origins=["https://App.Example.com:8443"])
    assert config.server_names == ("api.example.com",)
    assert config.cors_allowed_origins == ("https://app.example.com:8443",)


def test_one_year_hsts_and_explicit_origins_are_accepted():
    config = make(hsts_max_age_seconds=31_536_000, cors_allowed_origins=["https://app.example.com"])
    assert config.hsts_max_age_seconds == 31_536_000


def test_deployment_accepts_service_names_and_addresses():
    deployment = EdgeDeployment(
        upstream_servers=["api-gateway:8080", "stack_api-gateway:8080", "10.0.0.7:8080", "[fd00::7]:8080"],
        cert_path="/etc/nginx/tls/cert.pem",
        key_path="/etc/nginx/tls/key.pem",
    )
    assert len(deployment.upstream_servers) == 4


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("upstream_servers", ["api-gateway"], "upstream_servers: 'api-gateway' is not 'host:port'"),
        ("upstream_servers", ["http://api-gateway:8080"], "is not 'host:port'"),
        ("upstream_servers", ["api-gateway:0"], "port in 'api-gateway:0' must be 1-65535"),
        ("upstream_servers", ["api-gateway:70000"], "must be 1-65535"),
        ("upstream_servers", ["a:1", "a:1"], "duplicate entries"),
        ("upstream_servers", [], "at least 1 item"),
        ("cert_path", "tls/cert.pem", "cert_path: 'tls/cert.pem' must be an absolute file path"),
        ("key_path", "key.pem", "key_path: 'key.pem' must be an absolute file path"),
    ],
)
def test_deployment_refuses_bad_values(field, value, expected):
    arguments = {"upstream_servers": ["api-gateway:8080"], "cert_path": "/c.pem", "key_path": "/k.pem"}
    with pytest.raises(ValidationError) as excinfo:
        EdgeDeployment(**{**arguments, field: value})
    assert expected in error_message(excinfo)
