"""blackbox.yml: the module the uptime probes ask for exists, insists on TLS, and the real
blackbox exporter accepts the file."""

import yaml

from platform_infra.components.monitoring import BLACKBOX_MODULE, render_blackbox_config


def test_probe_module_requires_tls():
    module = yaml.safe_load(render_blackbox_config())["modules"][BLACKBOX_MODULE]
    assert module["prober"] == "http"
    assert module["http"]["fail_if_not_ssl"] is True


def test_blackbox_exporter_accepts_the_config(blackbox_binary, run, write):
    blackbox_yml = write("blackbox.yml", render_blackbox_config())
    result = run(blackbox_binary, f"--config.file={blackbox_yml}", "--config.check")
    assert result.returncode == 0, result.stdout
