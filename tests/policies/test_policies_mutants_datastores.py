"""Mutants of policies/rules/datastores.py and policies/rules/engine.py that survived the pack's other tests: each
test here pins the behaviour one of them changes (the comment names the rule line and the mutants it kills)."""

from __future__ import annotations

import secrets
import subprocess
import time

import pytest

from tests.conftest import require_tool
from tests.policies.conftest import ids, messages, named
from tests.policies.test_policies_rules import add_env, both, drop_env, edit_upload, set_fields

HAPROXY_CFG = "/etc/platform/haproxy.cfg"
UPDATE_PATH = "'^(/v[0-9]+[.][0-9]+)?/services/platform-prod-worker/update$'"
FINAL_DENY = "    http-request deny deny_status 403"
NO_FINAL_DENY = (f"autoscaler-socket-proxy: {HAPROXY_CFG}: the last http-request rule must be `http-request deny` "
                 "(refuse every other call)")


def test_the_superuser_finding_names_the_included_file(check):
    # datastores.py:217 postgres_superuser_local `includes {fields[-1]}`, the file an include line names
    # ([-1] -> [not 1], the directive itself).
    report = check(mutate=edit_upload("postgres", "pg_hba.conf", "local ", "include_dir conf.d\nlocal "))
    assert messages(report, "DS-PG-004") == [
        ("postgres: postgres postgres: hba_file /etc/platform/pg_hba.conf line 2 includes conf.d: a line there could "
         "let the superuser postgres in")]


@pytest.mark.parametrize("directory", ["/var", "/run/containerd", "/var/run/crio"])
def test_every_directory_above_a_runtime_socket_reaches_it(check, directory):
    # engine.py:28 _socket_parents `range(1, len(parts) + 1)`, every ancestor of each socket (+ -> ^ leaves out
    # /run/containerd, the parent of containerd.sock).
    report = check(mutate=set_fields("api-gateway", user="0:0", volumes=[
        {"hostPath": directory, "containerPath": "/host", "readOnly": True}]))
    assert messages(report, "ENG-001") == [
        f"api-gateway: mounts {directory} as root: the runtime socket under it is the whole Engine API"]


def test_root_is_the_user_id_not_the_group(check):
    # engine.py:44 runs_as_root `user.split(":", 1)[0]`, the uid of `uid:gid` ([0] -> [-1], the gid).
    def bind_run_as(user):
        return check(mutate=set_fields("api-gateway", user=user, volumes=[
            {"hostPath": "/var/run", "containerPath": "/host-run", "readOnly": True}]))

    assert messages(bind_run_as("0:1000"), "ENG-001") == [
        "api-gateway: mounts /var/run as root: the runtime socket under it is the whole Engine API"]
    assert "ENG-001" not in ids(bind_run_as("1000:0"))


def test_a_path_reg_of_two_patterns_allows_either(check):
    # engine.py:128 _allowed_calls `len(values) == 1` (== -> >=): HAProxy ORs an ACL's patterns, so the client's
    # path followed by another restricts the POST to neither.
    allow = f"http-request allow if {{ method POST }} {{ path_reg {UPDATE_PATH} '^/containers/create$' }}"
    report = check(mutate=edit_upload("autoscaler-socket-proxy", "haproxy.cfg",
                                      f"http-request allow if {{ method POST }} {{ path_reg {UPDATE_PATH} }}", allow))
    assert messages(report, "ENG-002") == [
        f"autoscaler-socket-proxy: {HAPROXY_CFG}: `{allow}` allows POST beyond autoscaler's calls"]


@pytest.mark.parametrize("last", [
    "http-request deny deny_status 403 if { method DELETE }",
    "http-request deny unless { method POST }",
    "http-request set-header X-Client autoscaler",
    "http-request disable-l7-retry",
])
def test_a_config_ending_in_another_rule_than_a_plain_deny_is_reported(check, last):
    # engine.py:131 `tokens[:2] == ["http-request", "deny"]` ([:2] -> [:1]: a conditional deny taken for a plain
    # one) and line 134, the last rule when it is neither allow nor deny (no other test reaches it; tokens[1] ->
    # tokens[2] fails on an action without arguments).
    report = check(mutate=edit_upload("autoscaler-socket-proxy", "haproxy.cfg", FINAL_DENY, f"    {last}"))
    assert messages(report, "ENG-002") == [NO_FINAL_DENY]


def test_a_proxy_config_after_another_upload_is_judged(check):
    # engine.py:172 socket_proxy_allow_list skips a file that does not forward to the socket (`continue`, not
    # `break`): the proxy's error page uploaded before its haproxy.cfg does not end the search.
    def mutate(rs):
        edit_upload("autoscaler-socket-proxy", "haproxy.cfg", f"{FINAL_DENY}\n", "")(rs)
        named(rs, "autoscaler-socket-proxy").inputs["uploads"].insert(0, {
            "file": "/etc/platform/errors/403.http",
            "content": "HTTP/1.0 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nnot an allowed call\n"})

    assert messages(check(mutate=mutate), "ENG-002") == [NO_FINAL_DENY]


def test_a_literal_requirepass_is_reported_whatever_precedes_the_flag(check):
    # datastores.py:265 redis_auth `command[index + 1]`, the flag's own value (+ -> ^ reads, at an odd index, the
    # argument before the flag: here one starting with `$`).
    report = check(mutate=set_fields("redis", command=["redis-server", "--dir", "$REDIS_DATA",
                                                       "--requirepass", "changeme"]))
    assert messages(report, "DS-REDIS-001") == [
        "redis: --requirepass with a literal value on the command line (visible in docker inspect)"]


@pytest.mark.parametrize("users", ["+admins", "app,@admins.txt"])
def test_a_role_or_a_user_file_may_hold_the_superuser(check, users):
    # datastores.py:224 postgres_superuser_local `u[:1] in "+@"`: a `+role` or `@file` user field may name the
    # superuser, so a line with one before the reject lets it in ([:1] -> [:2] matches neither).
    report = check(mutate=edit_upload("postgres", "pg_hba.conf", "host    all  postgres  all            reject",
                                      f"host    all  {users}  all  scram-sha-256\nhost    all  postgres  all  reject"))
    assert messages(report, "DS-PG-004") == [
        ("postgres: postgres postgres: hba_file /etc/platform/pg_hba.conf line 3 lets the superuser postgres log in "
         "over TCP")]


def test_an_hba_record_continued_on_the_next_line_is_read_whole(check):
    # PostgreSQL joins a line ending in a backslash with the next (checked on postgres:15.20: `host \` then
    # `replication postgres samenet trust` is a host trust record in pg_hba_file_rules); the rules read it whole.
    report = check(mutate=edit_upload("postgres", "pg_hba.conf", "local ",
                                      "host \\\nreplication postgres samenet trust\nlocal "))
    assert messages(report, "DS-PG-003") == [
        ("postgres: postgres postgres: hba_file /etc/platform/pg_hba.conf line 2 trusts host connections of "
         "postgres without a password")]
    assert "postgres: postgres postgres: hba_file /etc/platform/pg_hba.conf line 2 lets the superuser postgres log " \
        "in over TCP" in messages(report, "DS-PG-004")


CONTINUED_HBA = "local all all trust\nhost \\\nreplication postgres samenet trust\n"
POSTGRES_IMAGE = "postgres:15.20-bookworm"  # the stack's pin (infra/settings.py)


def test_postgres_reads_the_continued_hba_record_as_the_rules_do(tmp_path):
    """The stack's PostgreSQL image, given the continued record as its hba_file, lists one host trust record for
    the superuser on line 2 in pg_hba_file_rules: what DS-PG-003 and DS-PG-004 now report."""
    docker = require_tool("docker", "docker.io")
    hba = tmp_path / "pg_hba.conf"
    hba.write_text(CONTINUED_HBA)
    hba.chmod(0o644)
    name = f"hba-continued-{secrets.token_hex(4)}"
    subprocess.run([docker, "run", "-d", "--rm", "--name", name, "-e", f"POSTGRES_PASSWORD={secrets.token_hex(16)}",
                    "-v", f"{hba}:/etc/platform/pg_hba.conf:ro", POSTGRES_IMAGE,
                    "-c", "hba_file=/etc/platform/pg_hba.conf"], check=True, capture_output=True, timeout=120)
    try:
        query = ["psql", "-Atc", "select line_number, type, database, user_name, auth_method from pg_hba_file_rules"]
        deadline, done = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            done = subprocess.run([docker, "exec", "-u", "postgres", name, *query], check=False,
                                  capture_output=True, text=True,
                                  timeout=60)
            if done.returncode == 0:
                break
            time.sleep(1)
        assert done is not None and done.returncode == 0, done and done.stderr
        assert done.stdout.splitlines() == ["1|local|{all}|{all}|trust", "2|host|{replication}|{postgres}|trust"]
    finally:
        subprocess.run([docker, "rm", "-f", name], check=False, capture_output=True, timeout=60)


def test_a_comment_after_a_proxy_rule_is_no_part_of_it(check):
    # engine.py:107 _allowed_calls `shlex.split(line, comments=True)` (True -> False): HAProxy ends a line at `#`
    # (haproxy -c accepts both lines), so the comments add no condition to the allow nor to the final deny.
    def mutate(rs):
        edit_upload("autoscaler-socket-proxy", "haproxy.cfg", "/version$' }", "/version$' }  # the SDK's first call")(rs)
        edit_upload("autoscaler-socket-proxy", "haproxy.cfg", FINAL_DENY, f"{FINAL_DENY}  # if nothing above allowed it")(rs)

    assert "ENG-002" not in ids(check(mutate=mutate))


def test_only_rename_command_disables_or_enables_a_redis_command(check):
    # datastores.py:345 redis_dangerous_commands `name == "rename-command"` (== -> is not): another directive
    # of three fields, here the ACL user `debug`, leaves the disabled DEBUG disabled.
    report = check(mutate=edit_upload("redis", "redis.conf", 'rename-command DEBUG ""\n',
                                      f'rename-command DEBUG ""\nuser debug on #{"0" * 64} ~* -@all +@read\n'))
    assert "DS-REDIS-002" not in ids(report), messages(report, "DS-REDIS-002")


def test_a_listener_the_map_leaves_out_is_named_by_its_protocol(check):
    # datastores.py:394 _listener_protocols `KAFKA_LISTENERS or KAFKA_CFG_LISTENERS` (or -> and): the Apache
    # image's listeners alone are read, and one the map does not name uses the protocol of its name.
    report = check(mutate=both(drop_env("kafka", "KAFKA_LISTENERS="), add_env(
        "kafka", "KAFKA_LISTENERS=BROKER://:9092,CONTROLLER://127.0.0.1:9093,PLAINTEXT://:9094")))
    assert messages(report, "DS-KAFKA-001") == ["kafka: listener PLAINTEXT uses PLAINTEXT: no authentication"]


def _allow(old: str, new: str):
    return edit_upload("autoscaler-socket-proxy", "haproxy.cfg", old, new)


POST_UPDATE = f"http-request allow if {{ method POST }} {{ path_reg {UPDATE_PATH} }}"


def test_a_named_acl_before_another_term_is_anded_with_it(check):
    # engine.py:93 _terms `i += 1` past a named ACL (1 -> 2 skips the `{` of the term after it).
    report = check(mutate=_allow(POST_UPDATE, f"acl update path_reg {UPDATE_PATH}\n"
                                              "    http-request allow if update { method POST }"))
    assert "ENG-002" not in ids(report), messages(report, "ENG-002")


def test_an_allow_unless_allows_anything_else(check):
    # engine.py:117 `tokens[2] == "if"` (== -> is not): `unless { method GET }` allows every other method.
    line = "http-request allow unless { method GET }"
    report = check(mutate=_allow(FINAL_DENY, f"    {line}\n{FINAL_DENY}"))
    assert messages(report, "ENG-002") == [
        f"autoscaler-socket-proxy: {HAPROXY_CFG}: `{line}` allows any method beyond autoscaler's calls"]


def test_a_write_for_one_host_header_is_still_a_write(check):
    # engine.py:125 `fetch == "method"` (== -> <=: `hdr` sorts before `method`, its value taken for a method).
    line = "http-request allow if { method DELETE } { hdr(host) -i engine }"
    report = check(mutate=_allow(FINAL_DENY, f"    {line}\n{FINAL_DENY}"))
    assert messages(report, "ENG-002") == [
        f"autoscaler-socket-proxy: {HAPROXY_CFG}: `{line}` allows DELETE beyond autoscaler's calls"]
